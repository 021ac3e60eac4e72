-- ppl_delta: the ΔPPL matrix, one row per (name, intervened language, evaluated language). Every intervened
-- sentence is paired with its baseline (intervention = 'none') sentence of the same result name:
--   mean_delta     = mean(ppl_int − ppl_base)          (the paper's matrix cell)
--   median_ratio   = median(ppl_int / ppl_base)
--   mean_log_ratio = mean(ln ppl_int − ln ppl_base)     (= mean NLL difference, nats per token)
-- inputs: ppl_results
CREATE OR REPLACE VIEW ppl_delta AS
SELECT
    i.name,
    i.intervention,
    i.int_lang,
    i.lang,
    i.int_lang = i.lang                 AS is_diag,
    count(*)                            AS n_pairs,
    avg(b.ppl)                          AS base_mean_ppl,
    avg(i.ppl)                          AS int_mean_ppl,
    avg(i.ppl - b.ppl)                  AS mean_delta,
    median(i.ppl / b.ppl)               AS median_ratio,
    avg(i.nll - b.nll)                  AS mean_log_ratio
FROM ppl_results AS i
JOIN ppl_results AS b
  ON b.name = i.name AND b.intervention = 'none' AND b.lang = i.lang AND b.config = i.config AND b."row" = i."row"
WHERE i.intervention <> 'none'
GROUP BY ALL;
