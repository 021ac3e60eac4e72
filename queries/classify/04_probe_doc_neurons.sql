-- probe_doc_neurons(run_ids, layers, value): intermediate. The sparse per-document neuron matrix of the neuron
-- probe: one row per (run, document, layer, neuron) of neuron_docs (an output > 0 in the document), with the
-- run's language and x = probe_neuron_value(value, tok_count, act_sum, the document's n_tokens); the neuron is
-- named feature, as in probe_doc_units.
-- inputs: neuron_docs, docs, probe_neuron_value
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value 'count' | 'mean' | 'binary'
CREATE OR REPLACE MACRO probe_doc_neurons(run_ids, layers := NULL, value := 'count') AS TABLE
SELECT n.run_id, n.lang, n.doc_id, n.layer, n.neuron AS feature,
       probe_neuron_value(value, n.tok_count, n.act_sum, d.n_tokens) AS x
FROM neuron_docs n
JOIN docs d ON d.run_id = n.run_id AND d.doc_id = n.doc_id
WHERE list_contains(run_ids, n.run_id) AND (layers IS NULL OR list_contains(layers, n.layer));
