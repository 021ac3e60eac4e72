-- interpret_scores: per (result, scorer, feature): answered examples, confusion counts, accuracy, precision,
-- recall, F1 and ROC-AUC (NULL unless every answered example has a prob and both classes occur).
-- inputs: interpret_predictions
CREATE OR REPLACE VIEW interpret_scores AS
WITH answered AS (
    SELECT *, rank() OVER (PARTITION BY name, scorer, layer, feature ORDER BY prob) AS r_lo,
           count(*) OVER (PARTITION BY name, scorer, layer, feature, prob) AS n_tied
    FROM interpret_predictions
    WHERE prediction IS NOT NULL
), counts AS (
    SELECT name, scorer, layer, feature,
           count(*) AS n_answered,
           count(*) FILTER (WHERE activating AND prediction)         AS tp,
           count(*) FILTER (WHERE NOT activating AND prediction)     AS fp,
           count(*) FILTER (WHERE NOT activating AND NOT prediction) AS tn,
           count(*) FILTER (WHERE activating AND NOT prediction)     AS fn,
           count(prob) AS n_prob,
           sum(r_lo + (n_tied - 1) / 2.0) FILTER (WHERE activating) AS rank_sum_pos
    FROM answered
    GROUP BY ALL
), invalid AS (
    SELECT name, scorer, layer, feature, count(*) AS n_examples, count(*) FILTER (WHERE prediction IS NULL) AS n_invalid
    FROM interpret_predictions
    GROUP BY ALL
)
SELECT i.name, i.scorer, i.layer, i.feature, i.n_examples, i.n_invalid,
       coalesce(c.tp, 0) AS tp, coalesce(c.fp, 0) AS fp, coalesce(c.tn, 0) AS tn, coalesce(c.fn, 0) AS fn,
       CASE WHEN c.n_answered > 0 THEN (c.tp + c.tn) / c.n_answered END AS accuracy,
       CASE WHEN c.tp + c.fp > 0 THEN c.tp / (c.tp + c.fp) ELSE 0 END AS "precision",
       CASE WHEN c.tp + c.fn > 0 THEN c.tp / (c.tp + c.fn) ELSE 0 END AS recall,
       CASE WHEN 2 * c.tp + c.fp + c.fn > 0 THEN 2 * c.tp / (2 * c.tp + c.fp + c.fn) ELSE 0 END AS f1,
       CASE WHEN c.n_prob = c.n_answered AND c.tp + c.fn > 0 AND c.fp + c.tn > 0
            THEN (c.rank_sum_pos - (c.tp + c.fn) * (c.tp + c.fn + 1) / 2.0) / ((c.tp + c.fn) * (c.fp + c.tn))
       END AS roc_auc
FROM invalid i LEFT JOIN counts c USING (name, scorer, layer, feature);
