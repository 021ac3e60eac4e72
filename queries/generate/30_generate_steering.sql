-- generate_steering: per (name, method, language, α, mode) the steering score, scored like CLaS-Bench (Gurgurov et
-- al. 2026, arXiv 2601.08331) scores steering: the harmonic mean of a success rate and a quality score, here a
-- fluency score from the unsteered model's perplexity (CLaS-Bench's second axis is an LLM-judged relevance):
--   success_rate   = samples the language identifier assigns to the target language / all samples (an empty
--                    continuation is a failure); NULL when nothing was judged (generate --no-judge)
--   f_i            = 1 / char_ppl_i, the per-character likelihood of sample i under the unsteered model, in (0, 1];
--                    0 for an empty continuation
--   fluency_score  = mean f_i; NULL when fluency was not measured (generate --no-fluency, older results)
--   steering_score = 2 · success · fluency / (success + fluency); 0 when both are 0
-- Success counts the target language whatever the sign of α.
-- inputs: generate_results
CREATE OR REPLACE VIEW generate_steering AS
WITH samples AS (
    SELECT
        name,
        coalesce(method, 'sae-features')                                    AS method,
        source,
        lang,
        multiplier,
        last_token,
        lid_lang,
        trim(text) <> ''                                                    AS judgeable,
        char_ppl,
        CASE WHEN n_chars = 0 THEN 0.0 ELSE 1.0 / char_ppl END              AS fluency
    FROM generate_results
), cells AS (
    SELECT
        name, method, lang, multiplier, last_token,
        any_value(source)                                                   AS source,
        count(*)                                                            AS n,
        count(lid_lang)                                                     AS n_judged,
        count(*) FILTER (WHERE lid_lang = lang)                             AS n_target,
        count(*) FILTER (WHERE judgeable)                                   AS n_judgeable,
        count(fluency)                                                      AS n_fluency,
        avg(char_ppl)                                                       AS mean_char_ppl,
        median(char_ppl)                                                    AS median_char_ppl,
        avg(fluency)                                                        AS fluency_score
    FROM samples
    GROUP BY name, method, lang, multiplier, last_token
), rates AS (
    SELECT *,
           CASE WHEN n_judged = 0 AND n_judgeable > 0 THEN NULL ELSE n_target / n END AS success_rate
    FROM cells
)
SELECT
    name, method, source, lang, multiplier, last_token, n, n_judged, n_target, n_fluency,
    success_rate,
    mean_char_ppl,
    median_char_ppl,
    fluency_score,
    CASE WHEN success_rate + fluency_score = 0 THEN 0.0
         ELSE 2 * success_rate * fluency_score / (success_rate + fluency_score) END AS steering_score
FROM rates;
