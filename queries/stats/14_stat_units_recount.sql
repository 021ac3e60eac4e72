-- stat_units_recount(run_ids, layers): staging. The SAE feature aggregates recounted from the raw events of the
-- selected runs (same columns as stat_units for kind 'sae'): tok_count = events (one per token and feature),
-- doc_count = distinct documents, act_sum / act_max / act_min over the stored activations. A check of
-- feature_counts, and the way to count over a subset of documents.
-- Two steps instead of count(DISTINCT doc_id): first per (document, layer, feature), then per run. Grouping on
-- integers only is ~2x faster; doc_id carries its run number in its high bits (doc_id >> 40 = runs.run_num).
-- inputs: events, runs
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer)
CREATE OR REPLACE MACRO stat_units_recount(run_ids, layers := NULL) AS TABLE
WITH per_doc AS (
    SELECT doc_id, layer, feature,
           count(*)         AS n,
           sum(act::DOUBLE) AS s,
           max(act)         AS mx,
           min(act)         AS mn
    FROM events
    WHERE list_contains(run_ids, run_id) AND (layers IS NULL OR list_contains(layers, layer))
    GROUP BY doc_id, layer, feature
), per_run AS (
    SELECT doc_id >> 40 AS run_num, layer, feature,
           sum(n)::BIGINT   AS tok_count,
           count(*)::BIGINT AS doc_count,
           sum(s)           AS act_sum,
           max(mx)::FLOAT   AS act_max,
           min(mn)::FLOAT   AS act_min
    FROM per_doc
    GROUP BY ALL
)
SELECT r.run_id, r.lang, p.layer, p.feature AS unit, p.tok_count, p.doc_count, p.act_sum, p.act_max, p.act_min
FROM per_run AS p
JOIN runs AS r ON r.run_num = p.run_num AND list_contains(run_ids, r.run_id);
