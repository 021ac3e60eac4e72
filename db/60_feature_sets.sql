-- feature_sets: the named feature sets (sets/name=<name>/features.parquet); name is the partition column.
CREATE OR REPLACE VIEW feature_sets AS
SELECT name, algorithm, kind, lang, layer, feature, entropy, prob, act_max, act_min, act_avg, "rank"
FROM read_parquet('{store}/sets/name=*/features.parquet',
                  hive_partitioning = true,
                  hive_types = {'name': VARCHAR})
WHERE name <> '_schema';

-- feature_set_params: the parameters each set was made with (sets/name=<name>/params.json), as JSON.
CREATE OR REPLACE VIEW feature_set_params AS
SELECT regexp_extract(filename, 'name=([^/]+)/params\.json$', 1) AS name, content::JSON AS params
FROM read_text('{store}/sets/name=*/params.json')
WHERE regexp_extract(filename, 'name=([^/]+)/params\.json$', 1) <> '_schema';
