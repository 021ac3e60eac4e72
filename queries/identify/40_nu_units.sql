-- nu_units(kind, run_ids, layers, top, top_per_layer): mart. The monolinguality score of Deng et al. (ACL 2025,
-- "Unveiling Language-Specific Features in Large Language Models via Sparse Autoencoders", §3): per unit and
-- language L, μ_L = the unit's mean activation over the tokens of L (act_sum / n_tokens: tokens where it did not
-- fire count as 0), γ_L = the mean of μ over the other selected languages, ν_L = μ_L − γ_L. Units with ν_L > 0 are
-- ranked per language by ν descending (ties by layer, unit); top (NULL or 0 = all) keeps the first top of each
-- language, or of each of its layers with top_per_layer. In the feature_sets schema plus n_assigned (languages
-- the unit is kept for); score = ν, prob = the language's p, the activation statistics pooled over languages.
-- inputs: stat_lang_units, stat_lang_totals
-- params: kind 'sae' | 'neuron'; run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); top INTEGER;
--   top_per_layer BOOLEAN
CREATE OR REPLACE MACRO nu_units(kind, run_ids, layers := NULL, top := NULL, top_per_layer := false) AS TABLE
WITH
n AS (SELECT count(*)::DOUBLE AS n_langs FROM stat_lang_totals(run_ids)),
rows AS (SELECT *, act_sum / n_tokens AS mu FROM stat_lang_units(kind, run_ids, layers := layers)),
units AS (
    SELECT layer, unit, sum(mu) AS mu_sum, max(act_max) AS unit_act_max, min(act_min) AS unit_act_min,
           sum(act_sum) / sum(tok_count) AS unit_act_avg
    FROM rows GROUP BY layer, unit
),
scored AS (
    SELECT r.lang, r.layer, r.unit, r.p, u.unit_act_max, u.unit_act_min, u.unit_act_avg,
           r.mu - (u.mu_sum - r.mu) / (n.n_langs - 1) AS nu
    FROM rows r JOIN units u USING (layer, unit) CROSS JOIN n
    WHERE n.n_langs > 1
),
ordered AS (
    SELECT *,
           row_number() OVER (PARTITION BY lang ORDER BY nu DESC, layer, unit)        AS pos,
           row_number() OVER (PARTITION BY lang, layer ORDER BY nu DESC, unit)        AS pos_in_layer
    FROM scored
    WHERE nu > 0
),
kept AS (
    SELECT * FROM ordered
    WHERE coalesce(top, 0) = 0 OR CASE WHEN top_per_layer THEN pos_in_layer ELSE pos END <= top
)
SELECT
    'nu'::VARCHAR                               AS algorithm,
    kind::VARCHAR                               AS kind,
    k.lang,
    k.layer::INTEGER                            AS layer,
    k.unit::INTEGER                             AS feature,
    NULL::DOUBLE                                AS entropy,
    k.p                                         AS prob,
    k.unit_act_max::FLOAT                       AS act_max,
    k.unit_act_min::FLOAT                       AS act_min,
    k.unit_act_avg::FLOAT                       AS act_avg,
    row_number() OVER (PARTITION BY k.lang ORDER BY k.pos)::INTEGER AS rank,
    k.nu                                        AS score,
    count(*) OVER (PARTITION BY k.layer, k.unit)::INTEGER AS n_assigned
FROM kept k
JOIN stat_lang_totals(run_ids) t USING (lang)
ORDER BY t.lang_name, k.lang, rank;
