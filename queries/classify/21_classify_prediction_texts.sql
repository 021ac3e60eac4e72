-- classify_prediction_texts: per (result, document) the prediction with the document's text (the paper's
-- predictions CSV): doc, label, pred, correct, score, n_best, config, row, text.
-- inputs: classify_predictions, classify_docs
CREATE OR REPLACE VIEW classify_prediction_texts AS
SELECT p.name, p.doc, p.label, p.pred, p.correct, p.score, p.n_best, p.config, p."row", d.text
FROM classify_predictions p
JOIN classify_docs d USING (name, doc);
