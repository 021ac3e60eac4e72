-- ppl_results: per-sentence perplexities written by `langfeat ppl` (file schema in db/tables.sql), plus the
-- result name.
CREATE OR REPLACE VIEW ppl_results AS
SELECT *
FROM read_parquet('{store}/results/ppl_results/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- ppl_summary: per (name, intervention, intervened language, evaluated language): the paper's mean
-- per-sentence PPL, the median, and the token-weighted corpus PPL.
CREATE OR REPLACE VIEW ppl_summary AS
SELECT
    name,
    intervention,
    int_lang,
    lang,
    count(*)                                        AS n_sentences,
    avg(ppl)                                        AS mean_ppl,    -- the paper's mean_perplexity
    median(ppl)                                     AS median_ppl,
    exp(sum(nll * n_targets) / sum(n_targets))      AS corpus_ppl,  -- token-weighted
    sum(n_targets)                                  AS n_targets
FROM ppl_results
GROUP BY ALL;

-- ppl_result_list: one row per stored ppl result and intervention (what `langfeat report ppl` lists).
CREATE OR REPLACE VIEW ppl_result_list AS
SELECT name, intervention,
       count(DISTINCT int_lang) AS n_int_langs,
       count(DISTINCT lang)     AS n_eval_langs,
       count(*)                 AS n_rows,
       any_value(model)         AS model
FROM ppl_results
GROUP BY ALL
ORDER BY name, intervention;
