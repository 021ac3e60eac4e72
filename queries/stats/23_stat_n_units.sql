-- stat_n_units(kind, run_ids, layers): intermediate. The number of units per layer LAPE's percentile counts when
-- none is given: the largest unit index seen in the selected runs + 1 (0 when nothing fired).
-- inputs: stat_units
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO stat_n_units(kind, run_ids, layers := NULL) AS TABLE
SELECT coalesce(max(unit) + 1, 0)::BIGINT AS n_units
FROM stat_units(kind, run_ids, layers := layers);
