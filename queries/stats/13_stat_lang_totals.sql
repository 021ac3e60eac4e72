-- stat_lang_totals(run_ids): staging. Per language (canonical tag) the summed documents and tokens of the
-- selected runs, ordered by English name like the paper's sorted_lang (XNLI 'en' and FLORES 'eng_Latn' are one
-- language).
-- inputs: stat_run_totals
-- params: run_ids VARCHAR[]
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
