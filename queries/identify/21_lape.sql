-- lape(kind, run_ids, layers, n_units, filter_rate, top_rate, activation_bar_ratio): intermediate. The original
-- LAPE (Tang et al.) on the merged counts: units where some language has p > filter_value are candidates; the
-- round-half-even(top_rate · layers × n_units) candidates of lowest entropy are kept (ties by layer, unit); each is
-- assigned to every language with p > bar_value (an absolute bar; several languages allowed).
-- One row per (language, unit) membership with n_assigned, as sae_lape.
-- inputs: lape_bars, stat_lang_units, lang_entropy
-- params: as lape_bars, and top_rate (defaults: identify_defaults())
CREATE OR REPLACE MACRO lape(kind, run_ids, layers, n_units, filter_rate := identify_defaults().filter_rate,
                             top_rate := identify_defaults().top_rate,
                             activation_bar_ratio := identify_defaults().activation_bar_ratio) AS TABLE
WITH
bars AS (
    SELECT * FROM lape_bars(kind, run_ids, layers, n_units, filter_rate := filter_rate,
                            activation_bar_ratio := activation_bar_ratio)
),
rows AS (SELECT * FROM stat_lang_units(kind, run_ids, layers := layers) WHERE p > 0),
units AS (
    SELECT
        layer, unit,
        lang_entropy(p)                                     AS entropy,
        max(act_max)                                        AS unit_act_max,
        min(act_min)                                        AS unit_act_min,
        sum(act_sum) / sum(tok_count)                       AS unit_act_avg
    FROM rows
    GROUP BY layer, unit
    HAVING max(p) > (SELECT filter_value FROM bars)
),
kept AS (
    SELECT * FROM units
    ORDER BY round(entropy, 12), layer, unit
    LIMIT (SELECT round_even(len(layers)::BIGINT * n_units::BIGINT * top_rate::DOUBLE, 0)::BIGINT)
),
assigned AS (
    SELECT r.lang, r.layer, r.unit, r.p, k.entropy, k.unit_act_max, k.unit_act_min, k.unit_act_avg
    FROM rows r JOIN kept k USING (layer, unit)
    WHERE r.p > (SELECT bar_value FROM bars)
)
SELECT lang, layer, unit, p, entropy, count(*) OVER (PARTITION BY layer, unit) AS n_assigned,
       unit_act_max, unit_act_min, unit_act_avg
FROM assigned;
