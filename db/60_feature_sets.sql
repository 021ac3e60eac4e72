-- feature_sets: the named feature sets (sets/name=<name>/features.parquet); name is the partition column.
-- inputs: sets/name=*/features.parquet (source)
CREATE OR REPLACE VIEW feature_sets AS
SELECT name, algorithm, kind, lang, layer, feature, entropy, prob, act_max, act_min, act_avg, "rank", score
FROM {source:feature_sets};
