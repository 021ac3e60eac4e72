-- classify_units: the feature-set units (kind sae | neuron) each classify result voted with (sae-probe: every
-- non-zero coefficient, with the per-document value it weighs).
-- inputs: results/classify_units/name=*/*.parquet (source)
CREATE OR REPLACE VIEW classify_units AS
SELECT name, kind, lang, layer, feature, act_min, act_max, weight, value
FROM {source:classify_units};
