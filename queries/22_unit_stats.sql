-- unit_stats(kind, run_ids, layers): mart. One row per (language, layer, unit) that fired: counts, language
-- totals, coverage, p, normalised p (q), activation sum / mean / max / min in that language, and the unit's
-- entropy across languages with its pooled activation statistics (unit_act_max / unit_act_min / unit_act_avg).
CREATE OR REPLACE MACRO unit_stats(kind, run_ids, layers := NULL) AS TABLE
SELECT
    l.lang, l.layer, l.unit, l.tok_count, l.doc_count, l.n_docs, l.n_tokens, l.coverage, l.p,
    l.p / e.p_sum       AS q,
    l.act_sum, l.act_mean, l.act_max, l.act_min,
    e.entropy, e.n_langs,
    e.act_max           AS unit_act_max,
    e.act_min           AS unit_act_min,
    e.act_avg           AS unit_act_avg
FROM stat_lang_units(kind, run_ids, layers := layers) l
JOIN stat_unit_entropy(kind, run_ids, layers := layers) e USING (layer, unit)
ORDER BY l.layer, l.unit, l.lang;
