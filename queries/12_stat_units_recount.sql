-- stat_units_recount(run_ids, layers): staging. The SAE feature aggregates recounted from the raw events of the
-- selected runs (same columns as stat_units for kind 'sae'): tok_count = events (one per token and feature),
-- doc_count = distinct documents, act_sum / act_max / act_min over the stored activations. A check of
-- feature_counts, and the way to count over a subset of documents.
CREATE OR REPLACE MACRO stat_units_recount(run_ids, layers := NULL) AS TABLE
SELECT
    run_id, lang, layer, feature AS unit,
    count(*)::BIGINT                AS tok_count,
    count(DISTINCT doc_id)::BIGINT  AS doc_count,
    sum(act::DOUBLE)                AS act_sum,
    max(act)::FLOAT                 AS act_max,
    min(act)::FLOAT                 AS act_min
FROM events
WHERE list_contains(run_ids, run_id) AND (layers IS NULL OR list_contains(layers, layer))
GROUP BY run_id, lang, layer, feature;
