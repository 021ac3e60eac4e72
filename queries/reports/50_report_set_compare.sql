-- report_set_compare(a, b): mart. Two feature sets side by side: per (language, layer) the units of set a, of set b,
-- of both (a unit is (kind, layer, feature); a language's units are its rows in the set) and their Jaccard index
-- n_both / (n_a + n_b − n_both) (NULL when both are empty). Rows with layer NULL total a language over its
-- layers, the row with lang and layer NULL totals the (language, unit) memberships of both sets.
-- inputs: feature_sets
-- params: a, b: feature set names
CREATE OR REPLACE MACRO report_set_compare(a, b) AS TABLE
WITH
sa AS (SELECT DISTINCT lang, kind, layer, feature FROM feature_sets WHERE name = a),
sb AS (SELECT DISTINCT lang, kind, layer, feature FROM feature_sets WHERE name = b),
joined AS (
    SELECT coalesce(sa.lang, sb.lang) AS lang, coalesce(sa.layer, sb.layer) AS layer,
           sa.feature IS NOT NULL AS in_a, sb.feature IS NOT NULL AS in_b
    FROM sa FULL OUTER JOIN sb USING (lang, kind, layer, feature)
),
counts AS (
    SELECT lang, layer,
           count(*) FILTER (WHERE in_a)          AS n_a,
           count(*) FILTER (WHERE in_b)          AS n_b,
           count(*) FILTER (WHERE in_a AND in_b) AS n_both,
           grouping(lang)                        AS g_lang,
           grouping(layer)                       AS g_layer
    FROM joined
    GROUP BY GROUPING SETS ((lang, layer), (lang), ())
)
SELECT a::VARCHAR AS set_a, b::VARCHAR AS set_b, lang, layer::INTEGER AS layer, n_a, n_b, n_both,
       n_a - n_both AS only_a, n_b - n_both AS only_b,
       CASE WHEN n_a + n_b - n_both > 0 THEN n_both / (n_a + n_b - n_both) END AS jaccard
FROM counts
ORDER BY g_lang, lang, g_layer, layer;
