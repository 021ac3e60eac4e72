-- ppl_delta_long: the same cells with one row per metric (mean_delta | median_ratio | mean_log_ratio).
-- inputs: ppl_delta
CREATE OR REPLACE VIEW ppl_delta_long AS
SELECT name, intervention, int_lang, lang, is_diag, n_pairs, metric, value
FROM (UNPIVOT ppl_delta ON mean_delta, median_ratio, mean_log_ratio INTO NAME metric VALUE value);
