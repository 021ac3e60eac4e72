-- interpret_examples(set_name, ctx_len, n_train, n_test, n_quantiles, n_non_activating, seed, filter_bos, max_features): the examples of every feature: split = train (top activating, example 0 = highest),
-- test (quantile-sampled activating; quantile 1 = lowest activations) or non_activating (random blocks).
-- inputs: docs, interpret_activating, interpret_features, runs
-- params: set_name, ctx_len := 32, n_train := 40, n_test := 50, n_quantiles := 10, n_non_activating := 50, seed := 42, filter_bos := false, max_features := NULL
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
