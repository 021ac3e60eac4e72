-- report_language_totals: per language, the totals of report_languages: complete runs, documents, tokens and
-- tokens per document, ordered by English language name.
-- inputs: report_languages
CREATE OR REPLACE VIEW report_language_totals AS
SELECT
    lang,
    min(lang_name)                                          AS lang_name,
    count(*)                                                AS runs,
    sum(docs)::BIGINT                                       AS docs,
    sum(tokens)::BIGINT                                     AS tokens,
    round(sum(tokens) / nullif(sum(docs), 0), 1)            AS tokens_per_doc
FROM report_languages
GROUP BY lang
ORDER BY lang_name, lang;
