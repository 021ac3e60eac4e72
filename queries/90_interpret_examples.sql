-- Example selection of `langfeat interpret`: the contexts an explainer reads and a scorer judges.
-- Inputs: the views feature_sets, runs, docs, tokens and events.
-- Params (table macros, all but set_name optional):
--   set_name          the feature set whose SAE features are explained (kind = 'sae')
--   ctx_len           tokens per example (32)
--   n_train           top-activating examples shown to the explainer (40)
--   n_test            activating test examples, n_test // n_quantiles drawn from each quantile (50)
--   n_quantiles       activation quantiles of the test draw (10)
--   n_non_activating  random contexts where the feature does not fire (50)
--   seed              orders every random draw by md5(seed:layer:feature:run_id:doc_id:block), so draws repeat
--   filter_bos        drop activations at position 0 (false, as the paper)
--   max_features      explain only this many features, taken round-robin over the set's languages (NULL = all)
-- An activating example is one (document, block of ctx_len tokens) where the feature fires; its activation is
-- the block's largest, and its window is ctx_len tokens centred on that token (clipped to the document). Test
-- examples are drawn from the activating examples that are not training examples. A non-activating example is
-- a block (of a run holding the feature's layer) without any activation of the feature.
-- Usage: SELECT * FROM interpret_examples('demo-sae', max_features := 4);

-- interpret_features: the SAE features of a set, with their languages and their round-robin order (pick).
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

-- interpret_activating: per (feature, run, document, block) where the feature fires: the block's largest
-- activation, its position (the first on ties) and the example window [start_pos, end_pos) centred on it.
CREATE OR REPLACE MACRO interpret_activating(set_name, ctx_len := 32, filter_bos := false, max_features := NULL)
AS TABLE
WITH f AS (
    SELECT layer, feature FROM interpret_features(set_name, max_features := max_features)
), ev AS (
    SELECT e.run_id, e.doc_id, e.layer, e.feature, e.pos, e.act
    FROM events e SEMI JOIN f ON e.layer = f.layer AND e.feature = f.feature
    WHERE NOT (filter_bos AND e.pos = 0)
), blocks AS (
    SELECT run_id, doc_id, layer, feature, pos // ctx_len AS block, max(act) AS max_act,
           arg_max(pos, [act, -pos]) AS max_pos
    FROM ev
    GROUP BY ALL
)
SELECT b.layer, b.feature, b.run_id, b.doc_id, b.block, b.max_act, b.max_pos,
       greatest(0, least(b.max_pos - ctx_len // 2, d.n_tokens - ctx_len))::INTEGER AS start_pos,
       least(greatest(0, least(b.max_pos - ctx_len // 2, d.n_tokens - ctx_len)) + ctx_len, d.n_tokens)::INTEGER
           AS end_pos
FROM blocks b JOIN docs d ON d.run_id = b.run_id AND d.doc_id = b.doc_id;

-- interpret_examples: the examples of every feature: split = train (top activating, example 0 = highest),
-- test (quantile-sampled activating; quantile 1 = lowest activations) or non_activating (random blocks).
CREATE OR REPLACE MACRO interpret_examples(
    set_name, ctx_len := 32, n_train := 40, n_test := 50, n_quantiles := 10, n_non_activating := 50,
    seed := 42, filter_bos := false, max_features := NULL
) AS TABLE
WITH f AS (
    SELECT layer, feature FROM interpret_features(set_name, max_features := max_features)
), a AS (
    SELECT *,
           row_number() OVER (PARTITION BY layer, feature ORDER BY max_act DESC, run_id, doc_id, block) AS top_rank,
           md5(concat_ws(':', seed, layer, feature, run_id, doc_id, block)) AS draw
    FROM interpret_activating(set_name, ctx_len := ctx_len, filter_bos := filter_bos, max_features := max_features)
), train AS (
    SELECT layer, feature, 'train' AS split, (top_rank - 1)::INTEGER AS example, NULL::INTEGER AS quantile,
           run_id, doc_id, start_pos, end_pos, max_act
    FROM a
    WHERE top_rank <= n_train
), rest AS (
    SELECT *, ntile(n_quantiles) OVER (PARTITION BY layer, feature ORDER BY max_act, run_id, doc_id, block) AS q
    FROM a
    WHERE top_rank > n_train
), drawn AS (
    SELECT *, row_number() OVER (PARTITION BY layer, feature, q ORDER BY draw) AS r
    FROM rest
), test AS (
    SELECT layer, feature, 'test' AS split,
           (row_number() OVER (PARTITION BY layer, feature ORDER BY q, r) - 1)::INTEGER AS example,
           q::INTEGER AS quantile, run_id, doc_id, start_pos, end_pos, max_act
    FROM drawn
    WHERE r <= n_test // n_quantiles
), fired_blocks AS (
    SELECT DISTINCT layer, feature, run_id, doc_id, block FROM a
), candidates AS (
    SELECT f.layer, f.feature, d.run_id, d.doc_id, d.n_tokens,
           unnest(range(0, (d.n_tokens + ctx_len - 1) // ctx_len)) AS block
    FROM f
    JOIN runs r ON r.status = 'complete' AND list_contains(r.sae_layers, f.layer)
    JOIN docs d ON d.run_id = r.run_id
), quiet AS (
    SELECT c.*, md5(concat_ws(':', seed, c.layer, c.feature, c.run_id, c.doc_id, c.block)) AS draw
    FROM candidates c ANTI JOIN fired_blocks b
        ON b.layer = c.layer AND b.feature = c.feature AND b.run_id = c.run_id AND b.doc_id = c.doc_id
       AND b.block = c.block
), non_activating AS (
    SELECT layer, feature, 'non_activating' AS split,
           (row_number() OVER (PARTITION BY layer, feature ORDER BY draw) - 1)::INTEGER AS example,
           NULL::INTEGER AS quantile, run_id, doc_id,
           (block * ctx_len)::INTEGER AS start_pos, least(block * ctx_len + ctx_len, n_tokens)::INTEGER AS end_pos,
           0.0::FLOAT AS max_act
    FROM quiet
    QUALIFY example < n_non_activating
)
SELECT * FROM train
UNION ALL SELECT * FROM test
UNION ALL SELECT * FROM non_activating;

-- interpret_example_tokens: every token of every example (the same parameters as interpret_examples), with the
-- feature's activation on it (0 where it does not fire; position 0 counts 0 under filter_bos).
CREATE OR REPLACE MACRO interpret_example_tokens(
    set_name, ctx_len := 32, n_train := 40, n_test := 50, n_quantiles := 10, n_non_activating := 50,
    seed := 42, filter_bos := false, max_features := NULL
) AS TABLE
WITH x AS (
    SELECT * FROM interpret_examples(set_name, ctx_len := ctx_len, n_train := n_train, n_test := n_test,
                                     n_quantiles := n_quantiles, n_non_activating := n_non_activating,
                                     seed := seed, filter_bos := filter_bos, max_features := max_features)
), t AS (
    SELECT x.layer, x.feature, x.split, x.example, x.quantile, x.max_act, x.run_id, x.doc_id, t.pos, t.token_id
    FROM x JOIN tokens t ON t.run_id = x.run_id AND t.doc_id = x.doc_id AND t.pos >= x.start_pos
                        AND t.pos < x.end_pos
)
SELECT t.layer, t.feature, t.split, t.example, t.quantile, t.max_act, t.run_id, t.doc_id, t.pos, t.token_id,
       CASE WHEN filter_bos AND t.pos = 0 THEN 0.0 ELSE coalesce(e.act, 0.0) END::FLOAT AS act
FROM t LEFT JOIN events e
    ON e.run_id = t.run_id AND e.doc_id = t.doc_id AND e.pos = t.pos AND e.layer = t.layer AND e.feature = t.feature
ORDER BY t.layer, t.feature, t.split, t.example, t.pos;
