-- classify_langs: the candidate languages of each classify result and their number of units (features or
-- neurons at the hooked layers; sae-norm divides by it) and the sae-probe intercept.
-- inputs: results/classify_langs/name=*/*.parquet (source)
CREATE OR REPLACE VIEW classify_langs AS
SELECT name, lang, n_units, bias
FROM {source:classify_langs};
