-- classify_metrics: per result: documents, 'unknown' predictions, accuracy, and macro precision / recall / F1
-- averaged over the true labels (the evaluated languages; a prediction of any other language or 'unknown' is
-- an error that lowers recall).
-- inputs: classify_predictions, classify_class_metrics
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
