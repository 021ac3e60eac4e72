-- html_feature_contexts(top, n_contexts, tokens_around): the top-activating contexts of the SAE features of
-- html_feature_table(top). For each (layer, feature): its best activation in each document, the n_contexts
-- documents with the highest one (ties: by doc_id) as contexts k = 1..n_contexts, and for each context the tokens
-- at positions center − tokens_around .. center + tokens_around with the feature's activation there (0 where it
-- did not fire).
-- One row per (layer, feature, context, token position).
-- inputs: events, feature_sets, tokens
-- params: top := 5, n_contexts := 3, tokens_around := 8
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
