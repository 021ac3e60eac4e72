-- html_set_entropy: per (feature set, language) the distribution of its units' entropies as box-plot
-- statistics: n, min, first quartile, median, third quartile, max (quartiles interpolated, quantile_cont).
-- inputs: feature_sets
CREATE OR REPLACE VIEW html_set_entropy AS
SELECT
    name, lang,
    count(entropy)                          AS n,
    min(entropy)                            AS entropy_min,
    quantile_cont(entropy, 0.25)            AS entropy_q1,
    quantile_cont(entropy, 0.5)             AS entropy_median,
    quantile_cont(entropy, 0.75)            AS entropy_q3,
    max(entropy)                            AS entropy_max
FROM feature_sets
WHERE entropy IS NOT NULL
GROUP BY name, lang;
