-- ppl_results: per-sentence perplexities written by `langfeat ppl` (file schema in db/tables.sql), plus the
-- result name.
-- inputs: results/ppl_results/name=*/*.parquet (source)
CREATE OR REPLACE VIEW ppl_results AS
SELECT *
FROM {source:ppl_results};
