-- generate_result_list: one row per stored generation result (what `langfeat report generate` lists).
-- inputs: generate_results
CREATE OR REPLACE VIEW generate_result_list AS
SELECT name,
       string_agg(DISTINCT coalesce(method, 'sae-features'), ' ' ORDER BY coalesce(method, 'sae-features')) AS methods,
       count(DISTINCT lang)       AS n_langs,
       count(DISTINCT multiplier) AS n_multipliers,
       count(*)                   AS n_samples,
       any_value(model)           AS model
FROM generate_results
GROUP BY ALL
ORDER BY name;
