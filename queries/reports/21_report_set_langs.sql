-- report_set_langs: per (feature set, language) the number of units and the entropy min / median / max
-- (the paper's per-language table of identified features).
-- inputs: feature_sets
CREATE OR REPLACE VIEW report_set_langs AS
SELECT
    name, lang,
    count(*)            AS n,
    min(entropy)        AS entropy_min,
    median(entropy)     AS entropy_median,
    max(entropy)        AS entropy_max
FROM feature_sets
GROUP BY name, lang;
