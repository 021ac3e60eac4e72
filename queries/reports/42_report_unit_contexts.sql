-- report_unit_contexts(run_ids, at_layer, at_unit, top_n, width): mart. The top activations of one SAE feature in the
-- selected runs (the top_n highest act, ties by doc_id, pos) with the token ids of width positions either side:
-- left_ids (before pos), token_id (at pos; NULL when the document has no such token) and right_ids (after pos).
-- inputs: events, tokens
-- params: run_ids VARCHAR[]; at_layer INTEGER; at_unit INTEGER (the SAE feature); top_n INTEGER; width INTEGER
CREATE OR REPLACE MACRO report_unit_contexts(run_ids, at_layer, at_unit, top_n, width) AS TABLE
WITH hits AS (
    SELECT run_id, lang, doc_id, pos, act
    FROM events
    WHERE layer = at_layer AND feature = at_unit AND list_contains(run_ids, run_id)
    ORDER BY act DESC, doc_id, pos
    LIMIT top_n
)
SELECT
    h.run_id, h.lang, h.doc_id, h.pos, h.act,
    coalesce(list(t.token_id ORDER BY t.pos) FILTER (WHERE t.pos < h.pos), [])  AS left_ids,
    any_value(t.token_id) FILTER (WHERE t.pos = h.pos)                           AS token_id,
    coalesce(list(t.token_id ORDER BY t.pos) FILTER (WHERE t.pos > h.pos), [])  AS right_ids
FROM hits h
LEFT JOIN tokens t
  ON t.run_id = h.run_id AND t.doc_id = h.doc_id AND t.pos BETWEEN h.pos - width AND h.pos + width
GROUP BY h.run_id, h.lang, h.doc_id, h.pos, h.act
ORDER BY h.act DESC, h.doc_id, h.pos;
