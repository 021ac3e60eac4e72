-- runs: one row per run manifest (<store>/runs/<run_id>.json), whatever its status (running | complete | failed
-- | removing); role is 'identify' (ingested to identify features) or 'eval' (texts `classify` ingested to
-- evaluate). Manifests are read as text and parsed here, so an unreadable (e.g. truncated) manifest is skipped
-- instead of failing every query (`langfeat verify` names it); columns are typed explicitly so the view works
-- with zero runs; runs/_schema.json is a placeholder row.
-- inputs: runs/*.json (source)
-- model is a name --model accepts as is; model_description (optional) says what a named model is; sae_model is
-- the SAE's identity (hub id, or local:<hash> of a local folder's content) and sae_path where that folder was when
-- the run was ingested (NULL for hub SAEs and runs written before it was recorded).
CREATE OR REPLACE VIEW runs AS
WITH manifests AS (
    SELECT CASE WHEN json_valid(content) THEN json_transform(content, '{
        "run_id": "VARCHAR", "run_num": "INTEGER", "kind": "VARCHAR", "role": "VARCHAR", "status": "VARCHAR",
        "model": "VARCHAR", "model_description": "VARCHAR", "sae_model": "VARCHAR", "sae_path": "VARCHAR",
        "neurons": "BOOLEAN",
        "neuron_docs": "BOOLEAN",
        "dataset": "VARCHAR", "config": "VARCHAR", "split": "VARCHAR", "start": "BIGINT", "end": "BIGINT",
        "text_column": "VARCHAR", "template": "VARCHAR", "source_path": "VARCHAR",
        "lang": "VARCHAR", "lang_name": "VARCHAR",
        "layers": "INTEGER[]", "layer_paths": "VARCHAR[]", "sae_layers": "INTEGER[]", "neuron_layers": "INTEGER[]",
        "dtype": "VARCHAR", "max_length": "INTEGER", "bos": "BOOLEAN",
        "shard_docs": "INTEGER", "n_docs": "BIGINT", "n_tokens": "BIGINT",
        "created_at": "TIMESTAMPTZ", "finished_at": "TIMESTAMPTZ", "versions": "JSON", "error": "VARCHAR"
    }') END AS m  -- NULL for an unreadable manifest (the filter below drops it)
    FROM read_text({glob:runs})
)
SELECT
    m.run_id, m.run_num, m.kind, m.status,
    m.model, m.model_description, m.sae_model, m.sae_path, m.neurons,
    coalesce(m.neuron_docs, false) AS neuron_docs,  -- per-document neuron values stored (ingest --neuron-docs)
    m.dataset, m.config, m.split, m."start", m."end", m.text_column, m.template, m.source_path,
    m.lang, m.lang_name,
    m.layers, m.layer_paths, m.sae_layers, m.neuron_layers, m.dtype, m.max_length, m.bos, m.shard_docs,
    m.n_docs, m.n_tokens,
    m.created_at, m.finished_at, m.versions, m.error,
    coalesce(m.role, 'identify') AS role  -- manifests written before roles existed are identification runs
FROM manifests
WHERE m.run_id IS NOT NULL AND m.run_id <> {schema};
