-- classify_class_metrics: per (result, class) precision, recall and F1 (0 where undefined, as sklearn's
-- zero_division=0). Classes: every true label plus every predicted language ('unknown' is not a class).
-- inputs: classify_predictions
CREATE OR REPLACE VIEW classify_class_metrics AS
WITH preds AS MATERIALIZED (  -- computed once: the votes behind it scan the events
    SELECT name, label, pred FROM classify_predictions
), classes AS (
    SELECT DISTINCT name, label AS class FROM preds
    UNION
    SELECT DISTINCT name, pred AS class FROM preds WHERE pred <> 'unknown'
), counts AS (
    SELECT c.name, c.class,
           count(*) FILTER (WHERE p.label = c.class)                      AS support,
           count(*) FILTER (WHERE p.pred = c.class)                       AS predicted,
           count(*) FILTER (WHERE p.label = c.class AND p.pred = c.class) AS tp
    FROM classes c JOIN preds p ON p.name = c.name
    GROUP BY c.name, c.class
)
SELECT name, class, support, predicted, tp,
       CASE WHEN predicted > 0 THEN tp / predicted ELSE 0 END                        AS "precision",
       CASE WHEN support > 0 THEN tp / support ELSE 0 END                            AS recall,
       CASE WHEN support + predicted > 0 THEN 2 * tp / (support + predicted) ELSE 0 END AS f1
FROM counts;
