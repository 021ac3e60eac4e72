-- feature_set_params: the parameters each set was made with (sets/name=<name>/params.json), as JSON.
-- inputs: sets/name=*/params.json (source)
CREATE OR REPLACE VIEW feature_set_params AS
SELECT regexp_extract(filename, 'name=([^/]+)/params\.json$', 1) AS name, content::JSON AS params
FROM read_text({glob:feature_set_params})
WHERE regexp_extract(filename, 'name=([^/]+)/params\.json$', 1) <> {schema};
