-- classify_votes: per (result, document, candidate language) the classifier's score.
-- votes = firings of the language's SAE features in the document (every (token, feature) event with act > 0,
-- BOS included, as the paper counts); score by classifier:
--   sae-count    votes
--   sae-min-max  sum over firings of (act - act_min) / (act_max - act_min + 1e-6)   (the paper's normalisation)
--   sae-norm     votes / n_units of the language                                   (ours: set-size normalised)
--   sae-probe    bias + Σ weight · probe_value(value, firings, max act) over the document's (layer, feature)
--                with a coefficient for the language (the probe's linear score; its argmax is the probe's class)
--   neuron-probe bias + Σ weight · probe_neuron_value(value, tok_count, act_sum, n_tokens) over the document's
--                (layer, neuron) rows of neuron_docs with a coefficient (classify_units kind 'neuron')
--   neuron-count, fasttext: the stored classify_scores (neuron votes, fastText probability).
-- inputs: classify_docs, events, classify_units, classify_langs, classify_scores, probe_value, neuron_docs, docs, probe_neuron_value
CREATE OR REPLACE VIEW classify_votes AS
WITH fired AS (
    SELECT d.name, d.doc, u.lang,
           count(*) AS votes,
           sum((e.act::DOUBLE - u.act_min) / (u.act_max::DOUBLE - u.act_min + 1e-6)) AS minmax
    FROM classify_docs d
    JOIN events e ON e.run_id = d.run_id AND e.doc_id = d.doc_id
    JOIN classify_units u ON u.name = d.name AND u.layer = e.layer AND u.feature = e.feature
    WHERE d.classifier IN ('sae-count', 'sae-min-max', 'sae-norm') AND u.kind = 'sae'
    GROUP BY d.name, d.doc, u.lang
),
probe_fired AS (  -- per (result, document, probe unit): firings and maximum activation, before any language
    SELECT d.name, d.doc, e.layer, e.feature, count(*) AS n, max(e.act) AS act_max
    FROM classify_docs d
    JOIN events e ON e.run_id = d.run_id AND e.doc_id = d.doc_id
    SEMI JOIN (SELECT DISTINCT name, layer, feature FROM classify_units WHERE kind = 'sae') pu
        ON pu.name = d.name AND pu.layer = e.layer AND pu.feature = e.feature
    WHERE d.classifier = 'sae-probe'
    GROUP BY ALL
),
probe AS (
    SELECT f.name, f.doc, u.lang, sum(u.weight * probe_value(u.value, f.n, f.act_max)) AS score
    FROM probe_fired f
    JOIN classify_units u ON u.name = f.name AND u.layer = f.layer AND u.feature = f.feature AND u.kind = 'sae'
    GROUP BY f.name, f.doc, u.lang
),
neuron_probe AS (
    SELECT d.name, d.doc, u.lang,
           sum(u.weight * probe_neuron_value(u.value, n.tok_count, n.act_sum, t.n_tokens)) AS score
    FROM classify_docs d
    JOIN docs t ON t.run_id = d.run_id AND t.doc_id = d.doc_id
    JOIN neuron_docs n ON n.run_id = d.run_id AND n.doc_id = d.doc_id
    JOIN classify_units u ON u.name = d.name AND u.kind = 'neuron' AND u.layer = n.layer AND u.feature = n.neuron
    WHERE d.classifier = 'neuron-probe'
    GROUP BY d.name, d.doc, u.lang
)
SELECT
    d.name, d.classifier, d.doc, d.label, d.config, d."row", l.lang,
    CASE WHEN d.classifier IN ('sae-count', 'sae-min-max', 'sae-norm') THEN coalesce(f.votes, 0)
         WHEN d.classifier = 'neuron-count' THEN coalesce(s.score, 0)::BIGINT END AS votes,
    CASE d.classifier
        WHEN 'sae-count'   THEN coalesce(f.votes, 0)::DOUBLE
        WHEN 'sae-min-max' THEN coalesce(f.minmax, 0)
        WHEN 'sae-norm'    THEN coalesce(f.votes, 0)::DOUBLE / l.n_units
        WHEN 'sae-probe'   THEN l.bias + coalesce(p.score, 0)
        WHEN 'neuron-probe' THEN l.bias + coalesce(np.score, 0)
        ELSE coalesce(s.score, 0)
    END AS score
FROM classify_docs d
JOIN classify_langs l ON l.name = d.name
LEFT JOIN fired f ON f.name = d.name AND f.doc = d.doc AND f.lang = l.lang
LEFT JOIN probe p ON p.name = d.name AND p.doc = d.doc AND p.lang = l.lang
LEFT JOIN neuron_probe np ON np.name = d.name AND np.doc = d.doc AND np.lang = l.lang
LEFT JOIN classify_scores s ON s.name = d.name AND s.doc = d.doc AND s.lang = l.lang;
