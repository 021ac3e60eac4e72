-- classify_scores: per (result, document, language) scores computed outside SQL: neuron-count votes over
-- mlp.act_fn outputs and fastText probabilities.
-- inputs: results/classify_scores/name=*/*.parquet (source)
CREATE OR REPLACE VIEW classify_scores AS
SELECT name, doc, lang, score
FROM {source:classify_scores};
