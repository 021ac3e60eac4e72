-- events: one row per (token, SAE feature) with activation > 0; run_id, lang and layer come from the path,
-- so filters on them prune whole directories.
CREATE OR REPLACE VIEW events AS
SELECT run_id, dataset, lang, layer, doc_id, pos, feature, act
FROM read_parquet(['{store}/data/run_id=_schema/lang=und/events/layer=-1/part-schema.parquet',  -- placeholder first: the view binds to it
                   '{store}/data/run_id=*/lang=*/events/layer=*/*.parquet'],
                  hive_partitioning = true,
                  hive_types = {'run_id': VARCHAR, 'lang': VARCHAR, 'layer': INTEGER})
WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'complete');  -- committed runs only
