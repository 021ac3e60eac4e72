-- sae_lape_candidates(kind, run_ids, layers, example_rate, hfl_rate): intermediate. The SAE-LAPE candidate filter
-- (paper step 4): a unit is kept if some language has it in ≥ ⌊example_rate · n_docs⌋ of its documents AND some
-- (possibly other) language has tok_count > ⌊hfl_rate · n_tokens⌋. One row per (language, layer, unit) that
-- fired, for candidate units only, with the unit's entropy, max p over languages and pooled activation statistics.
-- inputs: stat_lang_totals, stat_run_totals, stat_units, merge_counts, lang_entropy
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); example_rate, hfl_rate
--   (defaults: identify_defaults())
CREATE OR REPLACE MACRO sae_lape_candidates(kind, run_ids, layers := NULL,
                                            example_rate := identify_defaults().example_rate,
                                            hfl_rate := identify_defaults().hfl_rate)
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
-- Pre-filter on single runs: row filters only, no aggregation over all units (the expensive part at scale).
-- Summed counts can pass a threshold only if some run's counts do: Σd ≥ ⌊e·ΣD⌋ > e·ΣD − 1 needs d > e·D − 1 in
-- some run, and Σc > ⌊h·ΣN⌋ needs c > h·N in some run. The margins only widen this superset; the exact test on
-- the merged counts follows.
run_rows AS NOT MATERIALIZED (
    SELECT u.*, rt.n_docs AS run_docs, rt.n_tokens AS run_tokens
    FROM stat_units(kind, run_ids, layers := layers) u JOIN rt USING (run_id)
),
hot_tok AS (
    SELECT DISTINCT layer, unit FROM run_rows WHERE tok_count > hfl_rate::DOUBLE * run_tokens - 0.000001
),
hot_doc AS (
    SELECT DISTINCT layer, unit FROM run_rows WHERE doc_count > example_rate::DOUBLE * run_docs - 1.000001
),
hot AS (
    SELECT * FROM hot_tok
    WHERE (SELECT doc_any FROM trivial) OR (layer, unit) IN (SELECT (layer, unit) FROM hot_doc)
),
-- The merge of stat_lang_units (merge_counts; p and coverage over the language totals),
-- applied after the pre-filter so that only the surviving units are aggregated.
rows AS (
    SELECT
        m.*, lt.n_docs, lt.n_tokens, lt.doc_min, lt.tok_floor,
        m.doc_count / lt.n_docs     AS coverage,
        m.tok_count / lt.n_tokens   AS p
    FROM (
        SELECT r.lang, r.layer, r.unit, unnest(merge_counts(tok_count, doc_count, act_sum, act_max, act_min))
        FROM run_rows r
        WHERE (r.layer, r.unit) IN (SELECT (layer, unit) FROM hot)  -- a mark join: its hash table holds hot only
        GROUP BY r.lang, r.layer, r.unit
    ) m
    JOIN lt USING (lang)
),
units AS (
    SELECT
        layer, unit,
        count(*)                                            AS n_langs,
        max(p)                                              AS p_max,
        lang_entropy(p)                                     AS entropy,
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
