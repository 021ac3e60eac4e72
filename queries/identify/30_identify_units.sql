-- identify_units(algorithm, kind, run_ids, layers, ...): mart. The language-specific unit set of `langfeat
-- identify` (paper steps 7–11), in the feature_sets schema plus n_assigned:
--   algorithm 'sae-lape' (ratio, example_rate, hfl_rate) or 'lape' (n_units, filter_rate, top_rate,
--   activation_bar_ratio) gives the (language, unit) assignments;
--   lang_specific keeps units assigned to exactly one language, else lang_shared to exactly shared_count;
--   within a language units are ordered by ascending entropy (equal to 12 decimals: by layer, unit), or with
--   top_by_frequency by that language's p descending (then the entropy order);
--   top (NULL or 0 = all) keeps the first top units of the language, or of each of its layers with
--   top_per_layer; entropy_threshold then keeps units with entropy ≤ it (a filter, in any order);
--   rank is the 1-based position in the language's final list.
-- inputs: sae_lape, lape, stat_lang_totals
-- params: algorithm 'sae-lape' | 'lape'; kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[]; the rest as
--   named above (rates default to identify_defaults())
CREATE OR REPLACE MACRO identify_units(
    algorithm, kind, run_ids, layers := NULL, n_units := NULL,
    ratio := identify_defaults().ratio, example_rate := identify_defaults().example_rate,
    hfl_rate := identify_defaults().hfl_rate, filter_rate := identify_defaults().filter_rate,
    top_rate := identify_defaults().top_rate, activation_bar_ratio := identify_defaults().activation_bar_ratio,
    lang_specific := false, lang_shared := false, shared_count := identify_defaults().shared_count,
    top := NULL, top_per_layer := false, top_by_frequency := false, entropy_threshold := NULL
) AS TABLE
WITH
assigned AS (
    SELECT * FROM sae_lape(kind, run_ids, layers := layers, example_rate := example_rate, hfl_rate := hfl_rate,
                           ratio := ratio)
    WHERE algorithm = 'sae-lape'
    UNION ALL
    SELECT * FROM lape(kind, run_ids, layers, n_units, filter_rate := filter_rate, top_rate := top_rate,
                       activation_bar_ratio := activation_bar_ratio)
    WHERE algorithm = 'lape'
),
filtered AS (
    SELECT * FROM assigned
    WHERE CASE WHEN lang_specific THEN n_assigned = 1
               WHEN lang_shared THEN n_assigned = shared_count
               ELSE true END
),
ordered AS (
    SELECT *, row_number() OVER (
        PARTITION BY lang
        ORDER BY CASE WHEN top_by_frequency THEN -p END, round(entropy, 12), layer, unit
    ) AS pos
    FROM filtered
),
truncated AS (
    SELECT *, row_number() OVER (PARTITION BY lang, layer ORDER BY pos) AS pos_in_layer
    FROM ordered
),
kept AS (
    SELECT * FROM truncated
    WHERE (coalesce(top, 0) = 0 OR CASE WHEN top_per_layer THEN pos_in_layer ELSE pos END <= top)
      AND (entropy_threshold IS NULL OR entropy <= entropy_threshold::DOUBLE)
)
SELECT
    algorithm::VARCHAR                          AS algorithm,
    kind::VARCHAR                               AS kind,
    k.lang,
    k.layer::INTEGER                            AS layer,
    k.unit::INTEGER                             AS feature,
    k.entropy,
    k.p                                         AS prob,
    k.unit_act_max::FLOAT                       AS act_max,
    k.unit_act_min::FLOAT                       AS act_min,
    k.unit_act_avg::FLOAT                       AS act_avg,
    row_number() OVER (PARTITION BY k.lang ORDER BY k.pos)::INTEGER AS rank,
    NULL::DOUBLE                                AS score,
    k.n_assigned::INTEGER                       AS n_assigned
FROM kept k
JOIN stat_lang_totals(run_ids) t USING (lang)
ORDER BY t.lang_name, k.lang, rank;
