-- events: one row per (token, SAE feature) with activation > 0; run_id, lang and layer come from the path,
-- so filters on them prune whole directories.
-- inputs: data/run_id=*/lang=*/events/layer=*/*.parquet (source)
CREATE OR REPLACE VIEW events AS
SELECT run_id, dataset, lang, layer, doc_id, pos, feature, act
FROM {source:events};
