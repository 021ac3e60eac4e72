-- report_unit_runs: per (complete run, layer, unit) the stored counts of SAE features (unit_kind 'sae') and
-- MLP neurons (unit_kind 'neuron'), with the run's model, dataset and document / token totals.
-- inputs: unit_counts, runs
CREATE OR REPLACE VIEW report_unit_runs AS
SELECT
    u.unit_kind, u.run_id, r.lang, r.model, r.sae_model, r.dataset, u.layer, u.unit,
    u.tok_count, u.doc_count, u.act_sum, u.act_max, u.act_min,
    r.n_docs, r.n_tokens
FROM unit_counts u JOIN runs r ON r.run_id = u.run_id
WHERE r.status = 'complete';
