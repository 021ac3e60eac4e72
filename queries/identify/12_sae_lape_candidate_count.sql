-- sae_lape_candidate_count(kind, run_ids, layers, example_rate, hfl_rate): mart. The number of distinct units
-- that pass the SAE-LAPE candidate filter (the candidate count in a feature set's summary).
-- inputs: sae_lape_candidates
-- params: as sae_lape_candidates (defaults: identify_defaults())
CREATE OR REPLACE MACRO sae_lape_candidate_count(kind, run_ids, layers := NULL,
                                                 example_rate := identify_defaults().example_rate,
                                                 hfl_rate := identify_defaults().hfl_rate) AS TABLE
SELECT count(DISTINCT (layer, unit))::BIGINT AS candidates
FROM sae_lape_candidates(kind, run_ids, layers := layers, example_rate := example_rate, hfl_rate := hfl_rate);
