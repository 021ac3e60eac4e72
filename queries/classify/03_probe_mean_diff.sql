-- probe_mean_diff(run_ids, layers, value, window_size, window_stride): intermediate. SAEBench's k-sparse probing
-- selection, per language: the mean of x (probe_doc_units; 0 where the unit did not fire) over the training
-- examples of the language minus its mean over the examples of every other language, per (language, layer,
-- feature) that fired in the language, ranked per language by that difference descending (ties by layer, feature).
-- The examples are the documents (window_size NULL) or the windows probe_doc_units cuts them into. The probe keeps
-- each language's first k.
-- inputs: docs, probe_doc_units
-- params: run_ids VARCHAR[]; layers INTEGER[] (NULL = every layer); value 'binary' | 'count' | 'max';
--   window_size INTEGER (NULL = whole documents); window_stride INTEGER (NULL = window_size / 2)
CREATE OR REPLACE MACRO probe_mean_diff(run_ids, layers := NULL, value := 'binary', window_size := NULL,
                                        window_stride := NULL) AS TABLE
WITH
cells AS (SELECT * FROM probe_doc_units(run_ids, layers := layers, value := value, window_size := window_size,
                                        window_stride := window_stride)),
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
       row_number() OVER (PARTITION BY lang ORDER BY diff DESC, layer, feature) AS rank
FROM diff;
