-- unit_stats(kind, run_ids, layers): mart. One row per (language, layer, unit) that fired: counts, language
-- totals, coverage, p, normalised p (q = p / p_sum), activation sum / mean / max / min in that language, and the
-- unit's statistics across languages: entropy (lang_entropy), n_langs, p_sum, p_max and the pooled activation
-- statistics unit_act_max / unit_act_min / unit_act_avg (the paper's gmax / gmin / gavg: max of max, min of min,
-- Σ act_sum / Σ tok_count). The unit columns are window aggregates over the rows with p > 0, so
-- stat_lang_units is evaluated once.
-- inputs: stat_lang_units, lang_entropy_of
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO unit_stats(kind, run_ids, layers := NULL) AS TABLE
SELECT
    lang, layer, unit, tok_count, doc_count, n_docs, n_tokens, coverage, p,
    p / sum(p) FILTER (WHERE p > 0) OVER u                                     AS q,
    act_sum, act_mean, act_max, act_min,
    lang_entropy_of(sum(p) FILTER (WHERE p > 0) OVER u,
                    sum(p * ln(p)) FILTER (WHERE p > 0) OVER u)                AS entropy,
    count(*) FILTER (WHERE p > 0) OVER u                                       AS n_langs,
    max(act_max) FILTER (WHERE p > 0) OVER u                                   AS unit_act_max,
    min(act_min) FILTER (WHERE p > 0) OVER u                                   AS unit_act_min,
    sum(act_sum) FILTER (WHERE p > 0) OVER u / sum(tok_count) FILTER (WHERE p > 0) OVER u AS unit_act_avg,
    sum(p) FILTER (WHERE p > 0) OVER u                                         AS p_sum,
    max(p) FILTER (WHERE p > 0) OVER u                                         AS p_max
FROM stat_lang_units(kind, run_ids, layers := layers)
WINDOW u AS (PARTITION BY layer, unit)
QUALIFY count(*) FILTER (WHERE p > 0) OVER u > 0
ORDER BY layer, unit, lang;
