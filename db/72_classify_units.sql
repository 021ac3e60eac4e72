-- classify_units: the feature-set units (kind sae | neuron) each classify result voted with.
-- inputs: results/classify_units/name=*/*.parquet (source)
CREATE OR REPLACE VIEW classify_units AS
SELECT name, kind, lang, layer, feature, act_min, act_max
FROM {source:classify_units};
