-- stat_lang_units(kind, run_ids, layers): intermediate. Counts merged per (language, layer, unit) over the
-- selected runs (merge_counts) with the language totals, coverage = doc_count / n_docs and the activation
-- probability p = tok_count / n_tokens. Only units that fired in the language have a row.
-- inputs: stat_units, stat_lang_totals, merge_counts
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO stat_lang_units(kind, run_ids, layers := NULL) AS TABLE
WITH merged AS (
    SELECT lang, layer, unit, unnest(merge_counts(tok_count, doc_count, act_sum, act_max, act_min))
    FROM stat_units(kind, run_ids, layers := layers)
    GROUP BY lang, layer, unit
)
SELECT
    m.lang, m.layer, m.unit, m.tok_count, m.doc_count, t.n_docs, t.n_tokens,
    m.doc_count / t.n_docs      AS coverage,
    m.tok_count / t.n_tokens    AS p,
    m.act_sum,
    m.act_sum / m.tok_count     AS act_mean,
    m.act_max,
    m.act_min
FROM merged m
JOIN stat_lang_totals(run_ids) t USING (lang);
