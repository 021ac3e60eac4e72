-- neuron_counts: per (run, layer, MLP neuron) aggregates of mlp.act_fn outputs > 0.
CREATE OR REPLACE VIEW neuron_counts AS
SELECT run_id, lang, layer, neuron, tok_count, doc_count, act_sum, act_max, act_min
FROM read_parquet(['{store}/data/run_id=_schema/lang=und/neuron_counts/part-schema.parquet',  -- placeholder first: the view binds to it
                   '{store}/data/run_id=*/lang=*/neuron_counts/*.parquet'],
                  hive_partitioning = true,
                  hive_types = {'run_id': VARCHAR, 'lang': VARCHAR})
WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'complete');  -- committed runs only
