-- interpret_explanations: one explanation per (result, feature), written from its top-activating examples.
-- inputs: results/interpret_explanations/name=*/*.parquet (source)
CREATE OR REPLACE VIEW interpret_explanations AS
SELECT name, feature_set, layer, feature, explainer, n_train, explanation
FROM {source:interpret_explanations};
