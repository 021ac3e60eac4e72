-- report_unit_langs(which, run_ids, at_layer, at_unit): mart. One unit across the languages of the selected runs
-- (`langfeat feature`): per language (by English name) its runs, documents, tokens, the unit's merged counts
-- (0 where it never fired), p = tok_count / tokens (BOS included, as the paper), coverage = doc_count / docs,
-- q = p / Σp, act_mean / act_max / act_min, and the unit's entropy across languages (NULL when it never fired).
-- inputs: stat_lang_totals, unit_stats
-- params: which (the unit kind) 'sae' | 'neuron'; run_ids VARCHAR[]; at_layer INTEGER; at_unit INTEGER
--   (the SAE feature or neuron)
CREATE OR REPLACE MACRO report_unit_langs(which, run_ids, at_layer, at_unit) AS TABLE
WITH s AS (
    SELECT * FROM unit_stats(which, run_ids, layers := [at_layer]) WHERE unit = at_unit
)
SELECT
    t.lang, t.lang_name, t.runs, t.n_docs AS docs, t.n_tokens AS tokens,
    coalesce(s.tok_count, 0)::BIGINT            AS tok_count,
    coalesce(s.doc_count, 0)::BIGINT            AS doc_count,
    coalesce(s.p, 0.0)                          AS p,
    coalesce(s.coverage, 0.0)                   AS coverage,
    coalesce(s.q, 0.0)                          AS q,
    s.act_mean, s.act_max, s.act_min,
    max(s.entropy) OVER ()                      AS entropy
FROM stat_lang_totals(run_ids) t
LEFT JOIN s USING (lang)
ORDER BY t.lang_name, t.lang;
