-- methods_steering: the steering comparison of `langfeat report methods`: per (method, language) the best cell of
-- every generate result in the store (generate_best_alpha; ties: the earlier result name, all-token mode first).
-- best_alpha is NULL for prompting (no steering).
-- inputs: generate_best_alpha
CREATE OR REPLACE VIEW methods_steering AS
SELECT
    method,
    lang,
    CASE WHEN method = 'prompting' THEN NULL ELSE best_alpha END AS best_alpha,
    success_rate,
    fluency_score,
    steering_score
FROM (
    SELECT *,
           row_number() OVER (PARTITION BY method, lang ORDER BY steering_score DESC, name, last_token) AS pick
    FROM generate_best_alpha
)
WHERE pick = 1
ORDER BY method, lang;
