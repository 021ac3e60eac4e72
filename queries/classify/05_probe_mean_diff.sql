-- probe_mean_diff(run_ids, layers, value, window_size, window_stride, kind): intermediate. SAEBench's k-sparse
-- probing selection, per language: the mean of x over the training examples of the language minus its mean over
-- the examples of every other language (0 where the unit did not fire), per (language, layer, feature) that fired
-- in the language, ranked per language by that difference descending (rounded to 9 decimals, so summation-order
-- noise of ~1e-15 cannot swap two units between runs; ties by layer, feature). kind 'sae' (the default): x from
-- probe_doc_units, the examples are the documents (window_size NULL) or the windows it cuts them into; kind
-- 'neuron': x from probe_doc_neurons (feature = the neuron), the examples are the documents. The probe keeps each
-- language's first k.
-- inputs: docs, probe_doc_units, probe_doc_neurons
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value (sae: 'binary' | 'count' | 'max';
--   neuron: 'count' | 'mean' | 'binary'); window_size INTEGER (NULL = whole documents; sae only); window_stride
--   INTEGER (NULL = window_size / 2); kind 'sae' | 'neuron'
CREATE OR REPLACE MACRO probe_mean_diff(run_ids, layers := NULL, value := 'binary', window_size := NULL,
                                        window_stride := NULL, kind := 'sae') AS TABLE
WITH
cells AS (
    SELECT lang, doc_id, win, layer, feature, x
    FROM probe_doc_units(run_ids, layers := layers, value := value, window_size := window_size,
                         window_stride := window_stride)
    WHERE kind = 'sae'
    UNION ALL
    SELECT lang, doc_id, 0::BIGINT AS win, layer, feature, x
    FROM probe_doc_neurons(run_ids, layers := layers, value := value)
    WHERE kind = 'neuron'
),
nd AS (
    SELECT lang, count(*)::DOUBLE AS n FROM docs
    WHERE window_size IS NULL AND list_contains(run_ids, run_id) GROUP BY lang
    UNION ALL
    SELECT lang, count(DISTINCT (doc_id, win))::DOUBLE AS n FROM cells WHERE window_size IS NOT NULL GROUP BY lang
),
tot AS (SELECT sum(n) AS n FROM nd),
sums AS (SELECT lang, layer, feature, sum(x) AS s FROM cells GROUP BY lang, layer, feature),
unit_sums AS (SELECT layer, feature, sum(s) AS s_all FROM sums GROUP BY layer, feature),
diff AS (
    SELECT s.lang, s.layer, s.feature,
           s.s / nd.n - (u.s_all - s.s) / (tot.n - nd.n) AS diff
    FROM sums s JOIN nd USING (lang) JOIN unit_sums u USING (layer, feature) CROSS JOIN tot
    WHERE tot.n > nd.n
)
SELECT lang, layer, feature, diff,
       row_number() OVER (PARTITION BY lang ORDER BY round(diff, 9) DESC, layer, feature) AS rank
FROM diff;
