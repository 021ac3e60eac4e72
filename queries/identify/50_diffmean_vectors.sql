-- diffmean_vectors: the DiffMean steering vector of each (vector set, language, layer), one row per dimension:
--   diff = mean_L − (1/(K−1)) Σ_{l≠L} mean_l
-- mean_L is the language's mean MLP output (diffmean_means); the other languages weigh equally, whatever their
-- token counts (K = languages of the set at that layer). other_mean is NULL when the set has one language.
-- inputs: diffmean_means
CREATE OR REPLACE VIEW diffmean_vectors AS
WITH pooled AS (
    SELECT *,
           sum(mean) OVER (PARTITION BY name, layer, dim)  AS total,
           count(*) OVER (PARTITION BY name, layer, dim)   AS n_langs
    FROM diffmean_means
)
SELECT
    name,
    lang,
    layer,
    dim,
    mean,
    (total - mean) / nullif(n_langs - 1, 0)          AS other_mean,
    mean - (total - mean) / nullif(n_langs - 1, 0)   AS diff,
    n_langs,
    n_tokens,
    n_docs
FROM pooled;
