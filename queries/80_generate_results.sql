-- generate_results: every sample written by `langfeat generate` (schema in db/tables.sql), plus the result name.
CREATE OR REPLACE VIEW generate_results AS
SELECT *
FROM read_parquet('{store}/results/generate_results/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- generate_result_list: one row per stored generation result (what `langfeat report generate` lists).
CREATE OR REPLACE VIEW generate_result_list AS
SELECT name,
       count(DISTINCT lang)       AS n_langs,
       count(DISTINCT multiplier) AS n_multipliers,
       count(*)                   AS n_samples,
       any_value(model)           AS model
FROM generate_results
GROUP BY ALL
ORDER BY name;
