-- feature_explanations: natural-language explanations of SAE features, one set per imported name
-- (`langfeat import-explanations`).
-- inputs: results/feature_explanations/name=*/*.parquet (source)
CREATE OR REPLACE VIEW feature_explanations AS
SELECT name, layer, feature, explanation, source
FROM {source:feature_explanations};
