-- stat_run_totals(run_ids): staging. Documents and tokens (BOS included) of each selected complete run.
-- inputs: runs
-- params: run_ids VARCHAR[]
CREATE OR REPLACE MACRO stat_run_totals(run_ids) AS TABLE
SELECT run_id, lang, lang_name, dataset, config, n_docs, n_tokens
FROM runs
WHERE status = 'complete' AND list_contains(run_ids, run_id);
