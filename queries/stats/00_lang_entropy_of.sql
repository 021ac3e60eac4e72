-- lang_entropy_of(p_sum, p_log_p_sum): expression macro. The same entropy from its two sums Σp and Σ p·ln p,
-- for window aggregates (unit_stats).
-- inputs: none
-- params: p_sum DOUBLE, p_log_p_sum DOUBLE
CREATE OR REPLACE MACRO lang_entropy_of(p_sum, p_log_p_sum) AS greatest(ln(p_sum) - p_log_p_sum / p_sum, 0.0);
