-- classify_predictions: per (result, document) the predicted language = the language with the strictly highest
-- score; a tie for the highest score, or a document where every score is 0, predicts 'unknown' (never the first
-- language). score is the best score, n_best how many languages reach it.
-- inputs: classify_votes
CREATE OR REPLACE VIEW classify_predictions AS
WITH v AS (
    SELECT *,
           max(score) OVER (PARTITION BY name, doc)      AS best,
           max(abs(score)) OVER (PARTITION BY name, doc) AS biggest
    FROM classify_votes
)
SELECT
    name, classifier, doc, label, config, "row",
    CASE WHEN count(*) FILTER (WHERE score = best) = 1 AND max(biggest) > 0
         THEN arg_max(lang, score) ELSE 'unknown' END AS pred,
    max(best)                                        AS score,
    count(*) FILTER (WHERE score = best)             AS n_best,
    (pred = label)                                   AS correct
FROM v
GROUP BY name, classifier, doc, label, config, "row";
