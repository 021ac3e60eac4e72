-- classify_metrics: per result: documents, 'unknown' predictions, accuracy, and macro precision / recall / F1
-- averaged over the true labels (the evaluated languages; a prediction of any other language or 'unknown' is
-- an error that lowers recall). Every figure comes from the per-class counts, so the votes behind them (which
-- scan the events) are computed once: documents = Σ support, accuracy = Σ tp / Σ support, unknown = documents −
-- Σ predicted (every prediction but 'unknown' is counted under its class).
-- inputs: classify_class_metrics, classify_docs
CREATE OR REPLACE VIEW classify_metrics AS
WITH cls AS MATERIALIZED (SELECT * FROM classify_class_metrics),
acc AS (
    SELECT name, sum(support)::BIGINT AS n_docs, (sum(support) - sum(predicted))::BIGINT AS n_unknown,
           sum(tp)::DOUBLE / sum(support)::DOUBLE AS accuracy
    FROM cls
    GROUP BY name
), macro AS (
    SELECT name, count(*) AS n_classes, avg("precision") AS precision_macro, avg(recall) AS recall_macro,
           avg(f1) AS f1_macro
    FROM cls
    WHERE support > 0
    GROUP BY name
), kind AS (
    SELECT name, any_value(classifier) AS classifier FROM classify_docs GROUP BY name
)
SELECT acc.name, classifier, n_docs, n_classes, n_unknown, accuracy, precision_macro, recall_macro, f1_macro
FROM acc JOIN macro USING (name) JOIN kind USING (name);
