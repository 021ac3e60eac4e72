-- Results of `langfeat interpret`: explanations, scorer answers, the prompt cache, and the scores.
-- Inputs: results/interpret_{explanations,predictions,cache} (file schemas in db/tables.sql) and feature_sets.
-- Params: none (every result name is a row value; filter on name).
-- Scores per (result, scorer, feature): tp/fp/tn/fn over the answered test examples, accuracy, precision,
-- recall, F1 (0 where a denominator is 0, as sklearn's zero_division=0), and ROC-AUC from prob (the
-- Mann-Whitney rank formula, ties counted half) where every answer has one; per language: their means.

-- interpret_explanations: one explanation per (result, feature), written from its top-activating examples.
CREATE OR REPLACE VIEW interpret_explanations AS
SELECT name, feature_set, layer, feature, explainer, n_train, explanation
FROM read_parquet('{store}/results/interpret_explanations/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- interpret_predictions: per (result, scorer, feature, test example) the truth (activating) and the answer.
CREATE OR REPLACE VIEW interpret_predictions AS
SELECT name, scorer, layer, feature, example, quantile, activating, prediction, prob
FROM read_parquet('{store}/results/interpret_predictions/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- interpret_cache: every prompt `langfeat interpret` sent and its answer (a rerun reads them from here).
CREATE OR REPLACE VIEW interpret_cache AS
SELECT name, key, explainer, kind, layer, feature, request, response, created_at
FROM read_parquet('{store}/results/interpret_cache/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- interpret_scores: per (result, scorer, feature): answered examples, confusion counts, accuracy, precision,
-- recall, F1 and ROC-AUC (NULL unless every answered example has a prob and both classes occur).
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

-- interpret_lang_scores: per (result, language, scorer) the mean scores of the set's features of that language
-- (a feature of several languages counts for each), like the paper's average_scores.csv.
CREATE OR REPLACE VIEW interpret_lang_scores AS
WITH langs AS (
    SELECT DISTINCT x.name, s.lang, x.layer, x.feature
    FROM interpret_explanations x
    JOIN feature_sets s ON s.name = x.feature_set AND s.layer = x.layer AND s.feature = x.feature
)
SELECT l.name, l.lang, sc.scorer, count(*) AS n_features,
       avg(sc.accuracy) AS accuracy, avg(sc.f1) AS f1, avg(sc."precision") AS "precision", avg(sc.recall) AS recall,
       avg(sc.roc_auc) AS roc_auc, sum(sc.n_invalid)::BIGINT AS n_invalid
FROM langs l JOIN interpret_scores sc USING (name, layer, feature)
GROUP BY ALL;
