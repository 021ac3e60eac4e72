-- lape_bars(kind, run_ids, layers, n_units, filter_rate, activation_bar_ratio): intermediate. LAPE's global
-- percentile values of the activation probabilities: the k-th smallest (k = round-half-even(rate · numel),
-- clamped to [1, numel]) of all p over every (selected layer, unit, language), where
-- numel = layers × n_units × languages and the units that never fired in a language count as p = 0.
-- inputs: stat_lang_units, stat_lang_totals
-- params: kind; run_ids VARCHAR[]; layers INTEGER[]; n_units (units per layer); filter_rate,
--   activation_bar_ratio (defaults: identify_defaults())
CREATE OR REPLACE MACRO lape_bars(kind, run_ids, layers, n_units, filter_rate := identify_defaults().filter_rate,
                                  activation_bar_ratio := identify_defaults().activation_bar_ratio) AS TABLE
WITH
pos AS (SELECT p FROM stat_lang_units(kind, run_ids, layers := layers) WHERE p > 0),
dims AS (
    SELECT (len(layers)::BIGINT * n_units::BIGINT * (SELECT count(*) FROM stat_lang_totals(run_ids)))::BIGINT
               AS numel,
           (SELECT count(*) FROM pos) AS n_pos
),
ks AS (
    SELECT numel, n_pos,
           least(greatest(round_even(numel * filter_rate::DOUBLE, 0)::BIGINT, 1), numel)          AS k_filter,
           least(greatest(round_even(numel * activation_bar_ratio::DOUBLE, 0)::BIGINT, 1), numel) AS k_bar
    FROM dims
),
ranked AS (SELECT p, row_number() OVER (ORDER BY p) AS i FROM pos)
SELECT
    numel, n_pos, k_filter, k_bar,
    CASE WHEN k_filter <= numel - n_pos THEN 0.0
         ELSE (SELECT p FROM ranked WHERE i = k_filter - (numel - n_pos)) END AS filter_value,
    CASE WHEN k_bar <= numel - n_pos THEN 0.0
         ELSE (SELECT p FROM ranked WHERE i = k_bar - (numel - n_pos)) END    AS bar_value
FROM ks;
