-- ppl_delta_summary: per (name, metric) the paper's summary: median (and mean) diagonal vs off-diagonal
-- cell, and rowmax, the number of intervened languages whose own cell is the row maximum (of n_rows).
-- inputs: ppl_delta_long, ppl_rowmax
CREATE OR REPLACE VIEW ppl_delta_summary AS
WITH cells AS (
    SELECT
        name, intervention, metric,
        median(value) FILTER (WHERE is_diag)      AS diag_median,
        median(value) FILTER (WHERE NOT is_diag)  AS off_median,
        avg(value) FILTER (WHERE is_diag)         AS diag_mean,
        avg(value) FILTER (WHERE NOT is_diag)     AS off_mean,
        count(*) FILTER (WHERE is_diag)           AS n_diag,
        count(*) FILTER (WHERE NOT is_diag)       AS n_off
    FROM ppl_delta_long
    GROUP BY ALL
), rows AS (
    SELECT name, intervention, metric, count(*) FILTER (WHERE diag_is_max) AS rowmax, count(*) AS n_rows
    FROM ppl_rowmax
    GROUP BY ALL
)
SELECT c.*, coalesce(r.rowmax, 0) AS rowmax, coalesce(r.n_rows, 0) AS n_rows
FROM cells AS c
LEFT JOIN rows AS r USING (name, intervention, metric);
