-- generate_results: every sample written by `langfeat generate` (schema in db/tables.sql), plus the result name.
CREATE OR REPLACE VIEW generate_results AS
SELECT *
FROM read_parquet('{store}/results/generate_results/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';
