-- methods_lid: language identification per method beside fastText on the same documents. One row per stored
-- classify result other than fastText: method (the feature set's algorithm and the classifier, e.g.
-- 'sae-lape + sae-count'; the probes are their own method), classifier, feature_set, the evaluated dataset,
-- n_docs, accuracy, and the accuracy of a fastText result over exactly the same documents (same labels, rows and
-- texts; NULL when the store has none; the best when several).
-- inputs: classify_docs, classify_metrics, feature_sets
CREATE OR REPLACE VIEW methods_lid AS
WITH
keyed AS (
    SELECT name, any_value(classifier) AS classifier, any_value(feature_set) AS feature_set,
           any_value(dataset) AS dataset,
           md5(string_agg(label || chr(31) || "row"::VARCHAR || chr(31) || text, chr(30)
                          ORDER BY label, "row", text)) AS doc_key
    FROM classify_docs
    GROUP BY name
),
metrics AS MATERIALIZED (SELECT * FROM classify_metrics),  -- computed once: it scans the events
algos AS (SELECT name AS feature_set, any_value(algorithm) AS algorithm FROM feature_sets GROUP BY name),
ft AS (
    SELECT k.doc_key, max(m.accuracy) AS fasttext_accuracy
    FROM keyed k JOIN metrics m USING (name)
    WHERE k.classifier = 'fasttext'
    GROUP BY k.doc_key
)
SELECT
    CASE WHEN k.classifier LIKE '%-probe' THEN k.classifier
         ELSE coalesce(a.algorithm, 'features') || ' + ' || k.classifier END AS method,
    k.classifier, k.feature_set, k.dataset, k.name, m.n_docs, m.accuracy, ft.fasttext_accuracy,
    m.accuracy - ft.fasttext_accuracy AS vs_fasttext
FROM keyed k
JOIN metrics m USING (name)
LEFT JOIN algos a USING (feature_set)
LEFT JOIN ft USING (doc_key)
WHERE k.classifier <> 'fasttext'
ORDER BY k.dataset, m.accuracy DESC, k.name;
