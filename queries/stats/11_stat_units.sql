-- stat_units(kind, run_ids, layers): staging. The ingestion aggregates of the selected runs, one row per
-- (run, layer, unit) that fired: kind 'sae' reads feature_counts, 'neuron' reads neuron_counts (unit = the SAE
-- latent or the neuron index).
-- inputs: unit_counts
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO stat_units(kind, run_ids, layers := NULL) AS TABLE
SELECT run_id, lang, layer, unit, tok_count, doc_count, act_sum, act_max, act_min
FROM unit_counts
WHERE unit_kind = kind AND list_contains(run_ids, run_id)
  AND (layers IS NULL OR list_contains(layers, layer));
