-- docs: one row per ingested text of every complete run; run_id and lang come from the partition path.
CREATE OR REPLACE VIEW docs AS
SELECT run_id, doc_id, dataset, lang, "row", n_tokens, text
FROM read_parquet(['{store}/data/run_id=_schema/lang=und/docs/part-schema.parquet',  -- placeholder first: the view binds to it
                   '{store}/data/run_id=*/lang=*/docs/*.parquet'],
                  hive_partitioning = true,
                  hive_types = {'run_id': VARCHAR, 'lang': VARCHAR})
WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'complete');  -- committed runs only
