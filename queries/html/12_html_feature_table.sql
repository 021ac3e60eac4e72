-- html_feature_table(top): the first `top` units (by rank) of every (feature set, language), with the
-- explanation of the feature where one was imported (kind 'sae' only; of several imports the first name wins).
-- inputs: feature_explanations, feature_sets
-- params: top := 5
CREATE OR REPLACE MACRO html_feature_table(top := 5) AS TABLE
WITH expl AS (
    SELECT layer, feature, arg_min(explanation, name) AS explanation, min(name) AS explanation_name
    FROM feature_explanations
    GROUP BY layer, feature
)
SELECT s.name, s.lang, s."rank", s.kind, s.layer, s.feature, s.entropy, s.prob, s.act_max,
       CASE WHEN s.kind = 'sae' THEN x.explanation END        AS explanation,
       CASE WHEN s.kind = 'sae' THEN x.explanation_name END   AS explanation_name
FROM feature_sets s
LEFT JOIN expl x USING (layer, feature)
WHERE s."rank" <= top
ORDER BY s.name, s.lang, s."rank";
