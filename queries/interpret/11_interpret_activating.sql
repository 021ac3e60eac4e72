-- interpret_activating(set_name, ctx_len, filter_bos, max_features): per (feature, run, document, block) where the feature fires: the block's largest
-- activation, its position (the first on ties) and the example window [start_pos, end_pos) centred on it.
-- inputs: docs, events, interpret_features
-- params: set_name, ctx_len := 32, filter_bos := false, max_features := NULL
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
