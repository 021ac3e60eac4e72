-- unit_counts: staging. The ingestion aggregates of every run, SAE features (unit_kind 'sae', from feature_counts)
-- and MLP neurons (unit_kind 'neuron', from neuron_counts) in one shape: unit is the SAE latent or the neuron index.
-- inputs: feature_counts, neuron_counts
CREATE OR REPLACE VIEW unit_counts AS
SELECT 'sae' AS unit_kind, run_id, lang, layer, feature AS unit, tok_count, doc_count, act_sum, act_max, act_min
FROM feature_counts
UNION ALL
SELECT 'neuron' AS unit_kind, run_id, lang, layer, neuron AS unit, tok_count, doc_count, act_sum, act_max, act_min
FROM neuron_counts;
