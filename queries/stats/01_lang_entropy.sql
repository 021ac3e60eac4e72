-- lang_entropy(p): expression macro, an aggregate. The entropy of a unit's activation probabilities p over
-- languages after normalising them to q = p / Σp (natural log, 0·ln 0 = 0): H = ln Σp − Σ p·ln p / Σp, clamped
-- at 0 against rounding. Use it in a GROUP BY over (layer, unit) of rows with p > 0 (stat_unit_entropy,
-- sae_lape_candidates, lape) or over a window (lang_entropy_of, defined first).
-- inputs: none
-- params: p DOUBLE, one value per language
CREATE OR REPLACE MACRO lang_entropy(p) AS lang_entropy_of(sum(p), sum(p * ln(p)));
