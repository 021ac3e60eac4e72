-- sae_lape(kind, run_ids, layers, example_rate, hfl_rate, ratio): intermediate. SAE-LAPE language assignment
-- (paper step 6): every candidate unit is assigned to each language with p ≥ ratio · max p (ratio in (0, 1]).
-- One row per (language, unit) membership with the number of languages the unit is assigned to (n_assigned).
-- inputs: sae_lape_candidates
-- params: as sae_lape_candidates, and ratio (the paper's --topk-threshold-ratio; defaults: identify_defaults())
CREATE OR REPLACE MACRO sae_lape(kind, run_ids, layers := NULL, example_rate := identify_defaults().example_rate,
                                 hfl_rate := identify_defaults().hfl_rate, ratio := identify_defaults().ratio)
AS TABLE
SELECT
    lang, layer, unit, p, entropy,
    count(*) OVER (PARTITION BY layer, unit)    AS n_assigned,
    unit_act_max, unit_act_min, unit_act_avg
FROM sae_lape_candidates(kind, run_ids, layers := layers, example_rate := example_rate, hfl_rate := hfl_rate)
WHERE p >= ratio::DOUBLE * p_max;
