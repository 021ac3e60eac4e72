-- sae_lape_candidates(kind, run_ids, layers, example_rate, hfl_rate): intermediate. The SAE-LAPE candidate filter
-- (paper step 4): a unit is kept if some language has it in ≥ ⌊example_rate · n_docs⌋ of its documents AND some
-- (possibly other) language has tok_count > ⌊hfl_rate · n_tokens⌋. One row per (language, layer, unit) that
-- fired, for candidate units only, with the unit's entropy, max p over languages and pooled activation statistics.
CREATE OR REPLACE MACRO sae_lape_candidates(kind, run_ids, layers := NULL, example_rate := 0.98, hfl_rate := 0.1)
AS TABLE
WITH
lt AS (
    SELECT lang, n_docs, n_tokens,
           floor(n_docs * example_rate::DOUBLE)   AS doc_min,   -- int(N_ex · example_rate): doc_count ≥ it
           floor(n_tokens * hfl_rate::DOUBLE)     AS tok_floor  -- int(N_tok · hfl_rate): tok_count > it
    FROM stat_lang_totals(run_ids)
),
-- A language whose document threshold is 0 satisfies the coverage condition for every unit.
trivial AS (SELECT coalesce(bool_or(doc_min <= 0), false) AS doc_any FROM lt),
rt AS (SELECT run_id, n_docs, n_tokens FROM stat_run_totals(run_ids)),
-- Pre-filter on single runs (one scan, no aggregation over all units). Summed counts can pass a threshold only if
-- some run's counts do: Σd ≥ ⌊e·ΣD⌋ > e·ΣD − 1 needs d > e·D − 1 in some run, Σc > ⌊h·ΣN⌋ needs c > h·N.
-- The exact test on the merged counts follows; the margins only widen the superset.
hot AS (
    SELECT u.layer, u.unit
    FROM stat_units(kind, run_ids, layers := layers) u JOIN rt USING (run_id) CROSS JOIN trivial
    GROUP BY u.layer, u.unit
    HAVING (bool_or(u.doc_count > example_rate::DOUBLE * rt.n_docs - 1.000001) OR any_value(trivial.doc_any))
       AND bool_or(u.tok_count > hfl_rate::DOUBLE * rt.n_tokens - 0.000001)
),
rows AS (
    SELECT l.*, lt.doc_min, lt.tok_floor
    FROM stat_lang_units(kind, run_ids, layers := layers) l
    SEMI JOIN hot USING (layer, unit)
    JOIN lt USING (lang)
),
units AS (
    SELECT
        layer, unit,
        count(*)                                            AS n_langs,
        max(p)                                              AS p_max,
        greatest(ln(sum(p)) - sum(p * ln(p)) / sum(p), 0.0) AS entropy,
        max(act_max)                                        AS unit_act_max,
        min(act_min)                                        AS unit_act_min,
        sum(act_sum) / sum(tok_count)                       AS unit_act_avg
    FROM rows CROSS JOIN trivial
    GROUP BY layer, unit
    HAVING (bool_or(doc_count >= doc_min) OR any_value(trivial.doc_any)) AND bool_or(tok_count > tok_floor)
)
SELECT r.lang, r.layer, r.unit, r.tok_count, r.doc_count, r.n_docs, r.n_tokens, r.coverage, r.p,
       u.n_langs, u.p_max, u.entropy, u.unit_act_max, u.unit_act_min, u.unit_act_avg
FROM rows r JOIN units u USING (layer, unit);
