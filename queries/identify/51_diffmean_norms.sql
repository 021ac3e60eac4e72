-- diffmean_norms: per (vector set, language, layer) the L2 norm of the DiffMean vector and of the language's mean
-- MLP output, with the tokens and documents averaged (what `langfeat report diffmean` shows).
-- inputs: diffmean_vectors
CREATE OR REPLACE VIEW diffmean_norms AS
SELECT
    name,
    lang,
    layer,
    count(*)                     AS d_model,
    sqrt(sum(diff * diff))       AS diff_norm,
    sqrt(sum(mean * mean))       AS mean_norm,
    any_value(n_langs)           AS n_langs,
    any_value(n_tokens)          AS n_tokens,
    any_value(n_docs)            AS n_docs
FROM diffmean_vectors
GROUP BY ALL;
