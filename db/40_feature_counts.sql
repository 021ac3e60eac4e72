-- feature_counts: per (run, layer, SAE feature) aggregates written at ingestion (no events rescan needed).
CREATE OR REPLACE VIEW feature_counts AS
SELECT run_id, lang, layer, feature, tok_count, doc_count, act_sum, act_max, act_min
FROM read_parquet(['{store}/data/run_id=_schema/lang=und/feature_counts/part-schema.parquet',  -- placeholder first: the view binds to it
                   '{store}/data/run_id=*/lang=*/feature_counts/*.parquet'],
                  hive_partitioning = true,
                  hive_types = {'run_id': VARCHAR, 'lang': VARCHAR})
WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'complete');  -- committed runs only
