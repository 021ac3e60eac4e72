-- report_set_layers: per (feature set, language, layer) the number of units and their entropy range.
CREATE OR REPLACE VIEW report_set_layers AS
SELECT
    name, lang, layer,
    count(*)            AS n,
    min(entropy)        AS entropy_min,
    median(entropy)     AS entropy_median,
    max(entropy)        AS entropy_max
FROM feature_sets
GROUP BY name, lang, layer;

-- report_set_langs: per (feature set, language) the number of units and the entropy min / median / max
-- (the paper's per-language table of identified features).
CREATE OR REPLACE VIEW report_set_langs AS
SELECT
    name, lang,
    count(*)            AS n,
    min(entropy)        AS entropy_min,
    median(entropy)     AS entropy_median,
    max(entropy)        AS entropy_max
FROM feature_sets
GROUP BY name, lang;

-- report_set_totals: per feature set the same over all its (language, unit) rows.
CREATE OR REPLACE VIEW report_set_totals AS
SELECT
    name,
    count(*)            AS n,
    min(entropy)        AS entropy_min,
    median(entropy)     AS entropy_median,
    max(entropy)        AS entropy_max
FROM feature_sets
GROUP BY name;
