-- probe_doc_units(run_ids, layers, value): intermediate. The sparse per-document feature matrix of the probes: one
-- row per (run, document, layer, SAE feature) that fired in the document, with the run's language and x =
-- probe_value(value, firings, max activation) over the document's events.
-- inputs: events, probe_value
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value 'binary' | 'count' | 'max'
CREATE OR REPLACE MACRO probe_doc_units(run_ids, layers := NULL, value := 'binary') AS TABLE
SELECT run_id, lang, doc_id, layer, feature, probe_value(value, count(*), max(act)) AS x
FROM events
WHERE list_contains(run_ids, run_id) AND (layers IS NULL OR list_contains(layers, layer))
GROUP BY run_id, lang, doc_id, layer, feature;
