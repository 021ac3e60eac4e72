-- generate_results: every sample written by `langfeat generate` (schema in db/tables.sql), plus the result name.
-- inputs: results/generate_results/name=*/*.parquet (source)
CREATE OR REPLACE VIEW generate_results AS
SELECT *
FROM {source:generate_results};
