-- demo_own_vs_other: per (feature set, language) whether its specific units are language features: the rate at
-- which they fire in their own language's text vs in the most-firing other language, over the runs the set was
-- identified on. rate = firings of the language's units per token of the text (tok_count summed over those units
-- / the text's tokens, BOS included); ratio = own_rate / top_other_rate (> 1: the units prefer their language).
-- inputs: feature_sets, feature_set_params, unit_counts, runs
CREATE OR REPLACE VIEW demo_own_vs_other AS
WITH set_runs AS (
    SELECT name, unnest(from_json(params -> 'runs', '["VARCHAR"]')) AS run_id
    FROM feature_set_params
), text_totals AS (
    SELECT s.name, r.lang AS text_lang, sum(r.n_tokens) AS n_tokens
    FROM set_runs AS s
    JOIN runs AS r USING (run_id)
    WHERE r.status = 'complete'
    GROUP BY ALL
), set_langs AS (
    SELECT name, lang AS feature_lang, count(*) AS n_units
    FROM feature_sets
    GROUP BY ALL
), fired AS (
    SELECT f.name, f.lang AS feature_lang, u.lang AS text_lang, sum(u.tok_count) AS n_fired
    FROM feature_sets AS f
    JOIN set_runs AS s ON s.name = f.name
    JOIN unit_counts AS u
      ON u.run_id = s.run_id AND u.unit_kind = f.kind AND u.layer = f.layer AND u.unit = f.feature
    GROUP BY ALL
), rates AS (
    SELECT l.name, l.feature_lang, l.n_units, t.text_lang, coalesce(fi.n_fired, 0) / t.n_tokens AS rate
    FROM set_langs AS l
    JOIN text_totals AS t ON t.name = l.name
    LEFT JOIN fired AS fi ON fi.name = l.name AND fi.feature_lang = l.feature_lang AND fi.text_lang = t.text_lang
)
SELECT
    name,
    feature_lang                                                        AS lang,
    any_value(n_units)                                                  AS n_units,
    max(rate) FILTER (WHERE text_lang = feature_lang)                   AS own_rate,
    max(rate) FILTER (WHERE text_lang <> feature_lang)                  AS top_other_rate,
    arg_max(text_lang, rate) FILTER (WHERE text_lang <> feature_lang)   AS top_other_lang,
    max(rate) FILTER (WHERE text_lang = feature_lang)
        / nullif(max(rate) FILTER (WHERE text_lang <> feature_lang), 0) AS ratio
FROM rates
GROUP BY name, feature_lang;
