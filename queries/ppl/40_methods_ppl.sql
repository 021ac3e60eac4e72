-- methods_ppl: the ΔPPL comparison of `langfeat report methods`, per method: "the diagonal is the row maximum in
-- n_diag_rowmax of n_rows rows" and the median diagonal vs off-diagonal cell (ratio = median_diag /
-- median_offdiag), on the paper's metric mean_delta (ppl_delta). A method is the intervention type, the feature
-- set or DiffMean vector set it used (the result name for results written before ppl recorded it) and α (or the
-- fixed value), e.g. 'sae-features demo-sae α=-0.2'; results of the same method are pooled.
-- inputs: ppl_results, ppl_delta_long, ppl_rowmax
CREATE OR REPLACE VIEW methods_ppl AS
WITH labels AS (
    SELECT
        name,
        intervention,
        intervention || ' ' || coalesce(any_value(source), name)
            || coalesce(printf(' α=%g', any_value(multiplier)), printf(' value=%g', any_value(value)), '') AS method
    FROM ppl_results
    WHERE intervention <> 'none'
    GROUP BY name, intervention
), cells AS (
    SELECT
        l.method,
        median(d.value) FILTER (WHERE d.is_diag)       AS median_diag,
        median(d.value) FILTER (WHERE NOT d.is_diag)   AS median_offdiag
    FROM ppl_delta_long AS d
    JOIN labels AS l USING (name, intervention)
    WHERE d.metric = 'mean_delta'
    GROUP BY l.method
), rows AS (
    SELECT
        l.method,
        count(*)                                 AS n_rows,
        count(*) FILTER (WHERE r.diag_is_max)    AS n_diag_rowmax
    FROM ppl_rowmax AS r
    JOIN labels AS l USING (name, intervention)
    WHERE r.metric = 'mean_delta'
    GROUP BY l.method
)
SELECT
    c.method,
    coalesce(r.n_rows, 0)                       AS n_rows,
    coalesce(r.n_diag_rowmax, 0)                AS n_diag_rowmax,
    c.median_diag,
    c.median_offdiag,
    c.median_diag / nullif(c.median_offdiag, 0) AS ratio
FROM cells AS c
LEFT JOIN rows AS r USING (method)
ORDER BY c.method;
