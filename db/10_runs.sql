-- runs: one row per run manifest (<store>/runs/<run_id>.json), whatever its status (running | complete | failed).
-- Columns are typed explicitly so the view works with zero runs; runs/_schema.json is a placeholder row.
-- inputs: runs/*.json (source)
-- model is a name --model accepts as is; model_description (optional) says what a named model is.
CREATE OR REPLACE VIEW runs AS
SELECT
    run_id, run_num, kind, status,
    model, model_description, sae_model, neurons,
    dataset, config, split, "start", "end", text_column, template, source_path,
    lang, lang_name,
    layers, layer_paths, sae_layers, neuron_layers, dtype, max_length, bos, shard_docs,
    n_docs, n_tokens,
    created_at, finished_at, versions, error
FROM read_json({glob:runs}, format = 'auto', columns = {
    run_id: 'VARCHAR', run_num: 'INTEGER', kind: 'VARCHAR', status: 'VARCHAR',
    model: 'VARCHAR', model_description: 'VARCHAR', sae_model: 'VARCHAR', neurons: 'BOOLEAN',
    dataset: 'VARCHAR', config: 'VARCHAR', split: 'VARCHAR', "start": 'BIGINT', "end": 'BIGINT',
    text_column: 'VARCHAR', template: 'VARCHAR', source_path: 'VARCHAR',
    lang: 'VARCHAR', lang_name: 'VARCHAR',
    layers: 'INTEGER[]', layer_paths: 'VARCHAR[]', sae_layers: 'INTEGER[]', neuron_layers: 'INTEGER[]',
    dtype: 'VARCHAR', max_length: 'INTEGER', bos: 'BOOLEAN',
    shard_docs: 'INTEGER', n_docs: 'BIGINT', n_tokens: 'BIGINT',
    created_at: 'TIMESTAMPTZ', finished_at: 'TIMESTAMPTZ', versions: 'JSON', error: 'VARCHAR'
})
WHERE run_id IS DISTINCT FROM {schema};
