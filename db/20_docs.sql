-- docs: one row per ingested text of every complete run; run_id and lang come from the partition path.
-- inputs: data/run_id=*/lang=*/docs/*.parquet (source)
CREATE OR REPLACE VIEW docs AS
SELECT run_id, doc_id, dataset, lang, "row", n_tokens, text
FROM {source:docs};
