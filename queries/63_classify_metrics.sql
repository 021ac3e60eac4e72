-- classify_confusion: per result, the confusion counts (rows: true label, columns: predicted; 'unknown' included).
CREATE OR REPLACE VIEW classify_confusion AS
SELECT name, label, pred, count(*) AS n
FROM classify_predictions
GROUP BY ALL;

-- classify_class_metrics: per (result, class) precision, recall and F1 (0 where undefined, as sklearn's
-- zero_division=0). Classes: every true label plus every predicted language ('unknown' is not a class).
CREATE OR REPLACE VIEW classify_class_metrics AS
WITH classes AS (
    SELECT DISTINCT name, label AS class FROM classify_predictions
    UNION
    SELECT DISTINCT name, pred AS class FROM classify_predictions WHERE pred <> 'unknown'
), counts AS (
    SELECT c.name, c.class,
           count(*) FILTER (WHERE p.label = c.class)                      AS support,
           count(*) FILTER (WHERE p.pred = c.class)                       AS predicted,
           count(*) FILTER (WHERE p.label = c.class AND p.pred = c.class) AS tp
    FROM classes c JOIN classify_predictions p ON p.name = c.name
    GROUP BY c.name, c.class
)
SELECT name, class, support, predicted, tp,
       CASE WHEN predicted > 0 THEN tp / predicted ELSE 0 END                        AS "precision",
       CASE WHEN support > 0 THEN tp / support ELSE 0 END                            AS recall,
       CASE WHEN support + predicted > 0 THEN 2 * tp / (support + predicted) ELSE 0 END AS f1
FROM counts;

-- classify_metrics: per result: documents, 'unknown' predictions, accuracy, and macro precision / recall / F1
-- averaged over the true labels (the evaluated languages; a prediction of any other language or 'unknown' is
-- an error that lowers recall).
CREATE OR REPLACE VIEW classify_metrics AS
WITH acc AS (
    SELECT name, any_value(classifier) AS classifier, count(*) AS n_docs,
           count(*) FILTER (WHERE pred = 'unknown') AS n_unknown,
           avg(correct::DOUBLE) AS accuracy
    FROM classify_predictions
    GROUP BY name
), macro AS (
    SELECT name, count(*) AS n_classes, avg("precision") AS precision_macro, avg(recall) AS recall_macro,
           avg(f1) AS f1_macro
    FROM classify_class_metrics
    WHERE support > 0
    GROUP BY name
)
SELECT acc.name, classifier, n_docs, n_classes, n_unknown, accuracy, precision_macro, recall_macro, f1_macro
FROM acc JOIN macro USING (name);
