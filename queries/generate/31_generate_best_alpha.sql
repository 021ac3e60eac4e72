-- generate_best_alpha: per (name, method, language, mode) the α with the highest steering score (ties: the smallest
-- |α|, then the smallest α), with its success rate, fluency score and steering score; n_alphas is how many α values
-- the sweep tried. Cells without a steering score (fluency or judging off) are never best.
-- inputs: generate_steering
CREATE OR REPLACE VIEW generate_best_alpha AS
SELECT
    name, method, source, lang, last_token,
    multiplier                                          AS best_alpha,
    success_rate,
    fluency_score,
    steering_score,
    mean_char_ppl,
    n,
    n_alphas
FROM (
    SELECT *,
           count(*) OVER w                                                          AS n_alphas,
           row_number() OVER (w ORDER BY steering_score DESC NULLS LAST, abs(multiplier), multiplier) AS pick
    FROM generate_steering
    WINDOW w AS (PARTITION BY name, method, lang, last_token)
)
WHERE pick = 1 AND steering_score IS NOT NULL;
