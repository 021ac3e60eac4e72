-- languages: one row per language with complete runs (totals from the run manifests), by English name.
-- inputs: runs
CREATE OR REPLACE VIEW languages AS
SELECT
    lang,
    any_value(lang_name ORDER BY created_at DESC) AS lang_name,
    count(*)                                        AS runs,
    list(DISTINCT dataset ORDER BY dataset)         AS datasets,
    sum(n_docs)::BIGINT                             AS docs,
    sum(n_tokens)::BIGINT                           AS tokens
FROM runs
WHERE status = 'complete'
GROUP BY lang
ORDER BY lang_name, lang;
