-- generate_switch: the automatic version of the paper's human "changed" count, per (name, method, language, α,
-- mode); method is sae-features for results written before generate had methods.
--   n_target    samples the language identifier assigns to the steered language
--   n_away      judged samples assigned to any other language
--   n_switched  n_target when α >= 0 (steering towards the language), n_away when α < 0 (steering away from
--               it, like the paper's English rows)
-- Rates are over judged samples (empty continuations are not judged). base_target_rate is the α = 0 rate of
-- the same name, method and language, when that baseline was generated.
-- inputs: generate_results
CREATE OR REPLACE VIEW generate_switch AS
WITH cells AS (
    SELECT
        name,
        coalesce(method, 'sae-features')                           AS method,
        lang,
        multiplier,
        last_token,
        count(*)                                                   AS n,
        count(lid_lang)                                            AS n_judged,
        count(*) FILTER (WHERE lid_lang = lang)                    AS n_target,
        count(*) FILTER (WHERE lid_lang <> lang)                   AS n_away,
        avg(lid_prob) FILTER (WHERE lid_lang = lang)               AS target_mean_prob,
        mode(lid_lang)                                             AS top_lid_lang,
        avg(n_new_tokens)                                          AS mean_new_tokens,
        avg(CASE WHEN stopped_eos THEN 1.0 ELSE 0.0 END)           AS eos_rate
    FROM generate_results
    GROUP BY ALL
)
SELECT
    c.name,
    c.lang,
    c.multiplier,
    c.last_token,
    c.method,
    c.n,
    c.n_judged,
    c.n_target,
    c.n_away,
    CASE WHEN c.multiplier >= 0 THEN c.n_target ELSE c.n_away END               AS n_switched,
    CASE WHEN c.multiplier >= 0 THEN c.n_target ELSE c.n_away END / nullif(c.n_judged, 0) AS switch_rate,
    c.n_target / nullif(c.n_judged, 0)                                          AS target_rate,
    b.n_target / nullif(b.n_judged, 0)                                          AS base_target_rate,
    c.target_mean_prob,
    c.top_lid_lang,
    c.mean_new_tokens,
    c.eos_rate
FROM cells AS c
LEFT JOIN cells AS b
  ON b.name = c.name AND b.method = c.method AND b.lang = c.lang AND b.last_token = c.last_token AND b.multiplier = 0;
