-- interpret_cache: every prompt `langfeat interpret` sent and its answer (a rerun reads them from here).
-- inputs: results/interpret_cache/name=*/*.parquet (source)
CREATE OR REPLACE VIEW interpret_cache AS
SELECT name, key, explainer, kind, layer, feature, request, response, created_at
FROM {source:interpret_cache};
