-- interpret_lang_scores: per (result, language, scorer) the mean scores of the set's features of that language
-- (a feature of several languages counts for each), like the paper's average_scores.csv.
-- inputs: feature_sets, interpret_explanations, interpret_scores
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
