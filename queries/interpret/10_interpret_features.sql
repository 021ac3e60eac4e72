-- interpret_features(set_name, max_features): the SAE features of a set, with their languages and their round-robin order (pick).
-- inputs: feature_sets
-- params: set_name, max_features := NULL
CREATE OR REPLACE MACRO interpret_features(set_name, max_features := NULL) AS TABLE
WITH s AS (
    SELECT lang, layer, feature,
           row_number() OVER (PARTITION BY lang ORDER BY "rank" NULLS LAST, layer, feature) AS r
    FROM feature_sets
    WHERE name = set_name AND kind = 'sae'
), f AS (
    SELECT layer, feature, list(DISTINCT lang ORDER BY lang) AS langs, min(r) AS r, min(lang) AS first_lang
    FROM s
    GROUP BY layer, feature
), ordered AS (
    SELECT layer, feature, langs, row_number() OVER (ORDER BY r, first_lang, layer, feature) AS pick
    FROM f
)
SELECT layer, feature, langs, pick
FROM ordered
WHERE max_features IS NULL OR pick <= max_features;
