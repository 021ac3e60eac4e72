-- stat_unit_entropy(kind, run_ids, layers): intermediate. Per (layer, unit): languages where it fired (n_langs),
-- the sum and max of p over languages, the entropy of the normalised probabilities (lang_entropy) and the
-- activation statistics pooled over languages (act_max / act_min / act_avg), as unit_stats gives them.
-- inputs: unit_stats
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO stat_unit_entropy(kind, run_ids, layers := NULL) AS TABLE
SELECT DISTINCT ON (layer, unit)
    layer, unit, n_langs, p_sum, p_max, entropy,
    unit_act_max AS act_max, unit_act_min AS act_min, unit_act_avg AS act_avg
FROM unit_stats(kind, run_ids, layers := layers)
ORDER BY layer, unit;
