-- ppl_summary: per (name, intervention, intervened language, evaluated language): the paper's mean
-- per-sentence PPL, the median, and the token-weighted corpus PPL.
-- inputs: ppl_results
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
