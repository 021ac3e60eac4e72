-- The statistics of `langfeat report html` that no other view gives (the page reads everything else from the
-- report_*, classify_*, ppl_* and generate_* views).

-- html_runs: one row per run manifest (every status) as the page lists them, by run number: the units recorded
-- (SAE model and / or 'neurons'), the layer range (min-max), documents, tokens (BOS included) and tokens per
-- document.
CREATE OR REPLACE VIEW html_runs AS
SELECT
    run_id, status, kind, model,
    concat_ws('+', sae_model, CASE WHEN neurons THEN 'neurons' END)    AS units,
    dataset, config, split, lang, lang_name                            AS language,
    CASE WHEN len(layers) = 0 OR layers IS NULL THEN NULL
         WHEN list_min(layers) = list_max(layers) THEN list_min(layers)::VARCHAR
         ELSE list_min(layers)::VARCHAR || '-' || list_max(layers)::VARCHAR END AS layers,
    n_docs                                                             AS docs,
    n_tokens                                                           AS tokens,
    round(n_tokens / nullif(n_docs, 0), 1)                             AS tokens_per_doc,
    strftime(created_at, '%Y-%m-%d %H:%M')                             AS created
FROM runs
ORDER BY run_num NULLS LAST, run_id;

-- html_set_entropy: per (feature set, language) the distribution of its units' entropies as box-plot
-- statistics: n, min, first quartile, median, third quartile, max (quartiles interpolated, quantile_cont).
CREATE OR REPLACE VIEW html_set_entropy AS
SELECT
    name, lang,
    count(entropy)                          AS n,
    min(entropy)                            AS entropy_min,
    quantile_cont(entropy, 0.25)            AS entropy_q1,
    quantile_cont(entropy, 0.5)             AS entropy_median,
    quantile_cont(entropy, 0.75)            AS entropy_q3,
    max(entropy)                            AS entropy_max
FROM feature_sets
WHERE entropy IS NOT NULL
GROUP BY name, lang;

-- html_feature_table(top): the first `top` units (by rank) of every (feature set, language), with the
-- explanation of the feature where one was imported (kind 'sae' only; of several imports the first name wins).
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

-- html_feature_contexts(top, n_contexts, tokens_around): the top-activating contexts of the SAE features of
-- html_feature_table(top). For each (layer, feature): its best activation in each document, the n_contexts
-- documents with the highest one (ties: by doc_id) as contexts k = 1..n_contexts, and for each context the tokens
-- at positions center − tokens_around .. center + tokens_around with the feature's activation there (0 where it
-- did not fire).
-- One row per (layer, feature, context, token position).
CREATE OR REPLACE MACRO html_feature_contexts(top := 5, n_contexts := 3, tokens_around := 8) AS TABLE
WITH
units AS (
    SELECT DISTINCT layer, feature FROM feature_sets WHERE kind = 'sae' AND "rank" <= top
),
fired AS MATERIALIZED (
    SELECT e.run_id, e.lang, e.layer, e.feature, e.doc_id, e.pos, e.act
    FROM events e SEMI JOIN units u ON u.layer = e.layer AND u.feature = e.feature
),
best AS (  -- per document its maximum activation, at the first position reaching it
    SELECT *, row_number() OVER (PARTITION BY run_id, layer, feature, doc_id ORDER BY act DESC, pos) AS r
    FROM fired
    QUALIFY r = 1
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY layer, feature ORDER BY act DESC, doc_id) AS k
    FROM best
    QUALIFY k <= n_contexts
)
SELECT
    c.layer, c.feature, c.k, c.run_id, c.lang, c.doc_id,
    c.pos                                   AS center,
    c.act                                   AS center_act,
    t.pos, t.token_id,
    coalesce(f.act, 0.0)::FLOAT             AS act
FROM ranked c
JOIN tokens t
  ON t.run_id = c.run_id AND t.doc_id = c.doc_id AND t.pos BETWEEN c.pos - tokens_around AND c.pos + tokens_around
LEFT JOIN fired f
  ON f.run_id = c.run_id AND f.doc_id = c.doc_id AND f.layer = c.layer AND f.feature = c.feature AND f.pos = t.pos
ORDER BY c.layer, c.feature, c.k, t.pos;
