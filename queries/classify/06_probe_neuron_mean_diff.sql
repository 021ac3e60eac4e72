-- probe_neuron_mean_diff(run_ids, layers, value): intermediate. probe_mean_diff for neurons (k-sparse probing):
-- the mean of x (probe_doc_neurons; 0 where the neuron had no output > 0) over the documents of the language
-- minus its mean over the documents of every other language, per (language, layer, neuron) with rows in the
-- language, ranked per language by that difference descending (ties by layer, neuron). The probe keeps each
-- language's first k.
-- inputs: docs, probe_doc_neurons
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value 'count' | 'mean' | 'binary'
CREATE OR REPLACE MACRO probe_neuron_mean_diff(run_ids, layers := NULL, value := 'count') AS TABLE
WITH
nd AS (SELECT lang, count(*)::DOUBLE AS n FROM docs WHERE list_contains(run_ids, run_id) GROUP BY lang),
tot AS (SELECT sum(n) AS n FROM nd),
sums AS (
    SELECT lang, layer, feature, sum(x) AS s
    FROM probe_doc_neurons(run_ids, layers := layers, value := value)
    GROUP BY lang, layer, feature
),
unit_sums AS (SELECT layer, feature, sum(s) AS s_all FROM sums GROUP BY layer, feature),
diff AS (
    SELECT s.lang, s.layer, s.feature,
           s.s / nd.n - (u.s_all - s.s) / (tot.n - nd.n) AS diff
    FROM sums s JOIN nd USING (lang) JOIN unit_sums u USING (layer, feature) CROSS JOIN tot
    WHERE tot.n > nd.n
)
SELECT lang, layer, feature, diff,
       row_number() OVER (PARTITION BY lang ORDER BY diff DESC, layer, feature) AS rank
FROM diff;
