-- neuron_docs: per (run, document, layer, MLP neuron) with at least one mlp.act_fn output > 0 in the document:
-- tok_count (tokens where it is > 0, BOS included, the positions of neuron_counts) and act_sum (their sum).
-- Only runs ingested with --neuron-docs have rows; run_id, lang and layer come from the path.
-- inputs: data/run_id=*/lang=*/neuron_docs/layer=*/*.parquet (source)
CREATE OR REPLACE VIEW neuron_docs AS
SELECT run_id, lang, layer, doc_id, neuron, tok_count, act_sum
FROM {source:neuron_docs};
