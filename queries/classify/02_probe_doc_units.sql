-- probe_doc_units(run_ids, layers, value, window_size, window_stride): intermediate. The sparse per-document
-- feature matrix of the probes: one row per (run, document, window, layer, SAE feature) that fired there, with the
-- run's language and x = probe_value(value, firings, max activation) over those events. window_size NULL (the
-- default): the whole document is one example (win = 0). window_size W: the documents are cut into windows of W
-- tokens starting every window_stride tokens (default W / 2 rounded down, at least 1); window win covers the
-- positions [win · stride, win · stride + W), a token belongs to every window covering it, and a window exists
-- where at least one of its tokens has an event. Windows turn long training documents into many examples as
-- short as the texts a probe will score.
-- inputs: events, docs, probe_value
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value 'binary' | 'count' | 'max';
--   window_size INTEGER (NULL = whole documents); window_stride INTEGER (NULL = window_size / 2)
CREATE OR REPLACE MACRO probe_doc_units(run_ids, layers := NULL, value := 'binary', window_size := NULL,
                                        window_stride := NULL) AS TABLE
WITH
step AS (SELECT greatest(1, coalesce(window_stride, window_size // 2))::BIGINT AS s),
windowed AS (
    SELECT e.doc_id, e.layer, e.feature, e.act,
           unnest(CASE WHEN window_size IS NULL THEN [0::BIGINT]
                       ELSE range(CASE WHEN e.pos < window_size THEN 0 ELSE (e.pos - window_size) // step.s + 1 END,
                                  e.pos // step.s + 1) END) AS win
    FROM events e CROSS JOIN step
    WHERE list_contains(run_ids, e.run_id) AND (layers IS NULL OR list_contains(layers, e.layer))
),
cells AS (  -- grouped on integer keys only (a document id names its run and language): the hash table stays small
    SELECT doc_id, win, layer, feature, probe_value(value, count(*), max(act)) AS x
    FROM windowed
    GROUP BY doc_id, win, layer, feature
)
SELECT d.run_id, d.lang, c.doc_id, c.win, c.layer, c.feature, c.x
FROM cells c
JOIN (SELECT run_id, doc_id, lang FROM docs WHERE list_contains(run_ids, run_id)) d USING (doc_id);
