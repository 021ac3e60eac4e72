-- feature_counts: per (run, layer, SAE feature) aggregates written at ingestion (no events rescan needed).
-- inputs: data/run_id=*/lang=*/feature_counts/*.parquet (source)
CREATE OR REPLACE VIEW feature_counts AS
SELECT run_id, lang, layer, feature, tok_count, doc_count, act_sum, act_max, act_min
FROM {source:feature_counts};
