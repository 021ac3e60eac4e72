-- stat_run_totals(run_ids): staging. Documents and tokens (BOS included) of each selected complete run.
CREATE OR REPLACE MACRO stat_run_totals(run_ids) AS TABLE
SELECT run_id, lang, lang_name, dataset, config, n_docs, n_tokens
FROM runs
WHERE status = 'complete' AND list_contains(run_ids, run_id);

-- stat_lang_totals(run_ids): per language (canonical tag) the summed documents and tokens of the selected runs,
-- ordered by English name like the paper's sorted_lang (XNLI 'en' and FLORES 'eng_Latn' are one language).
CREATE OR REPLACE MACRO stat_lang_totals(run_ids) AS TABLE
SELECT
    lang,
    min(lang_name)                  AS lang_name,
    count(*)                        AS runs,
    list(run_id ORDER BY run_id)    AS run_ids,
    sum(n_docs)::BIGINT             AS n_docs,
    sum(n_tokens)::BIGINT           AS n_tokens
FROM stat_run_totals(run_ids)
GROUP BY lang
ORDER BY lang_name, lang;
