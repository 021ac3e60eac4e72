-- html_runs: one row per run manifest (every status) as the page lists them, by run number: the units recorded
-- (SAE model and / or 'neurons'), the layer range (min-max), documents, tokens (BOS included) and tokens per
-- document.
-- inputs: docs, runs, tokens
CREATE OR REPLACE VIEW html_runs AS
SELECT
    run_id, status, kind, model,
    concat_ws('+', sae_model, CASE WHEN neurons THEN 'neurons' END)    AS units,
    dataset, config, split, lang, lang_name                            AS language,
    CASE WHEN len(layers) = 0 OR layers IS NULL THEN NULL
         WHEN list_min(layers) = list_max(layers) THEN list_min(layers)::VARCHAR
         ELSE list_min(layers)::VARCHAR || '-' || list_max(layers)::VARCHAR END AS layers,
    n_docs                                                             AS docs,
    n_tokens                                                           AS tokens,
    round(n_tokens / nullif(n_docs, 0), 1)                             AS tokens_per_doc,
    strftime(created_at, '%Y-%m-%d %H:%M')                             AS created
FROM runs
ORDER BY run_num NULLS LAST, run_id;
