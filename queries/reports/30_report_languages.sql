-- report_languages: documents and tokens (BOS included) per language and complete run, imports included,
-- ordered by English language name then run number.
-- inputs: runs
CREATE OR REPLACE VIEW report_languages AS
SELECT
    lang,
    lang_name,
    run_id,
    run_num,
    kind,
    model,
    concat_ws('+', sae_model, CASE WHEN neurons THEN 'neurons' END) AS units,
    dataset,
    config,
    split,
    n_docs                                                  AS docs,
    n_tokens                                                AS tokens,
    round(n_tokens / nullif(n_docs, 0), 1)                  AS tokens_per_doc
FROM runs
WHERE status = 'complete'
ORDER BY lang_name, lang, run_num;
