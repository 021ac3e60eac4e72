-- probe_unit_stats(kind, run_ids, layers): intermediate. Per (layer, unit) that fired in the training runs of a
-- probe: its activation statistics pooled over their languages (act_max, act_min, act_avg = act_sum / tok_count,
-- p = tok_count / n_tokens over all their tokens). The probe's stored feature set carries them, so it can steer
-- (α · act_max) like a SAE-LAPE set.
-- inputs: stat_lang_units, stat_lang_totals
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO probe_unit_stats(kind, run_ids, layers := NULL) AS TABLE
SELECT layer::INTEGER AS layer, unit::INTEGER AS feature, max(act_max)::FLOAT AS act_max,
       min(act_min)::FLOAT AS act_min, (sum(act_sum) / sum(tok_count))::FLOAT AS act_avg,
       sum(tok_count)::DOUBLE / any_value(t.n) AS prob
FROM stat_lang_units(kind, run_ids, layers := layers)
CROSS JOIN (SELECT sum(n_tokens)::DOUBLE AS n FROM stat_lang_totals(run_ids)) t
GROUP BY layer, unit;
