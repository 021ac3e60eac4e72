-- neuron_counts: per (run, layer, MLP neuron) aggregates of mlp.act_fn outputs > 0.
-- inputs: data/run_id=*/lang=*/neuron_counts/*.parquet (source)
CREATE OR REPLACE VIEW neuron_counts AS
SELECT run_id, lang, layer, neuron, tok_count, doc_count, act_sum, act_max, act_min
FROM {source:neuron_counts};
