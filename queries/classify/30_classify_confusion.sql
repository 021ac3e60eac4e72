-- classify_confusion: per result, the confusion counts (rows: true label, columns: predicted; 'unknown' included).
-- inputs: classify_predictions
CREATE OR REPLACE VIEW classify_confusion AS
SELECT name, label, pred, count(*) AS n
FROM classify_predictions
GROUP BY ALL;
