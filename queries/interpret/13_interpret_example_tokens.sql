-- interpret_example_tokens(set_name, ctx_len, n_train, n_test, n_quantiles, n_non_activating, seed, filter_bos, max_features): every token of every example (the same parameters as interpret_examples), with the
-- feature's activation on it (0 where it does not fire; position 0 counts 0 under filter_bos).
-- inputs: events, interpret_examples, tokens
-- params: set_name, ctx_len := 32, n_train := 40, n_test := 50, n_quantiles := 10, n_non_activating := 50, seed := 42, filter_bos := false, max_features := NULL
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
