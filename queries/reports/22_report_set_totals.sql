-- report_set_totals: per feature set the same over all its (language, unit) rows.
-- inputs: feature_sets
CREATE OR REPLACE VIEW report_set_totals AS
SELECT
    name,
    count(*)            AS n,
    min(entropy)        AS entropy_min,
    median(entropy)     AS entropy_median,
    max(entropy)        AS entropy_max
FROM feature_sets
GROUP BY name;
