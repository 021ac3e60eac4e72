-- stat_unit_entropy(kind, run_ids, layers): intermediate. Per (layer, unit): languages where it fired, the sum
-- and max of p over languages, the entropy of the normalised probabilities q = p / Σp (natural log,
-- 0·ln0 = 0: H = ln Σp − Σ p·ln p / Σp over the languages with p > 0) and the activation statistics pooled
-- over languages (the paper's gmax / gmin / gavg: max of max, min of min, Σ act_sum / Σ tok_count).
CREATE OR REPLACE MACRO stat_unit_entropy(kind, run_ids, layers := NULL) AS TABLE
SELECT
    layer, unit,
    count(*)                                        AS n_langs,
    sum(p)                                          AS p_sum,
    max(p)                                          AS p_max,
    greatest(ln(sum(p)) - sum(p * ln(p)) / sum(p), 0.0) AS entropy,
    max(act_max)                                    AS act_max,
    min(act_min)                                    AS act_min,
    sum(act_sum) / sum(tok_count)                   AS act_avg
FROM stat_lang_units(kind, run_ids, layers := layers)
WHERE p > 0
GROUP BY layer, unit;
