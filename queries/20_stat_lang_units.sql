-- stat_lang_units(kind, run_ids, layers): intermediate. Counts merged per (language, layer, unit) over the
-- selected runs (sums; max of act_max, min of act_min) with the language totals, coverage = doc_count / n_docs
-- and the activation probability p = tok_count / n_tokens. Only units that fired in the language have a row.
CREATE OR REPLACE MACRO stat_lang_units(kind, run_ids, layers := NULL) AS TABLE
WITH merged AS (
    SELECT lang, layer, unit,
           sum(tok_count)::BIGINT AS tok_count, sum(doc_count)::BIGINT AS doc_count,
           sum(act_sum) AS act_sum, max(act_max) AS act_max, min(act_min) AS act_min
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
