-- ppl_result_list: one row per stored ppl result and intervention (what `langfeat report ppl` lists).
-- inputs: ppl_results
CREATE OR REPLACE VIEW ppl_result_list AS
SELECT name, intervention,
       count(DISTINCT int_lang) AS n_int_langs,
       count(DISTINCT lang)     AS n_eval_langs,
       count(*)                 AS n_rows,
       any_value(model)         AS model
FROM ppl_results
GROUP BY ALL
ORDER BY name, intervention;
