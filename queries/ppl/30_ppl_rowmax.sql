-- ppl_rowmax: per (name, metric, intervened language) whose own language was evaluated: its diagonal cell,
-- the largest off-diagonal cell, and whether the diagonal is the row maximum (true when nothing else was
-- evaluated).
-- inputs: ppl_delta_long
CREATE OR REPLACE VIEW ppl_rowmax AS
SELECT
    name,
    intervention,
    metric,
    int_lang,
    max(value) FILTER (WHERE is_diag)                                  AS diag,
    max(value) FILTER (WHERE NOT is_diag)                              AS max_off,
    arg_max(lang, value) FILTER (WHERE NOT is_diag)                    AS max_off_lang,
    coalesce(max(value) FILTER (WHERE is_diag) >= max(value) FILTER (WHERE NOT is_diag), true) AS diag_is_max
FROM ppl_delta_long
GROUP BY ALL
HAVING count(*) FILTER (WHERE is_diag) > 0;
