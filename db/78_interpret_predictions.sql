-- interpret_predictions: per (result, scorer, feature, test example) the truth (activating) and the answer.
-- inputs: results/interpret_predictions/name=*/*.parquet (source)
CREATE OR REPLACE VIEW interpret_predictions AS
SELECT name, scorer, layer, feature, example, quantile, activating, prediction, prob
FROM {source:interpret_predictions};
