-- report_set_layer_totals: per (feature set, layer) its (language, unit) rows over all languages (the 'all'
-- row of `langfeat features`).
-- inputs: feature_sets
CREATE OR REPLACE VIEW report_set_layer_totals AS
SELECT name, layer, count(*) AS n
FROM feature_sets
GROUP BY name, layer;
