-- report_set_layers: per (feature set, language, layer) the number of units and their entropy range.
-- inputs: feature_sets
CREATE OR REPLACE VIEW report_set_layers AS
SELECT
    name, lang, layer,
    count(*)            AS n,
    min(entropy)        AS entropy_min,
    median(entropy)     AS entropy_median,
    max(entropy)        AS entropy_max
FROM feature_sets
GROUP BY name, lang, layer;
