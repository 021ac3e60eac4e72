-- report_set_summary(set_name, run_ids): mart. Per language of feature set set_name and of the runs it was
-- identified over: documents and tokens of those runs (NULL for a language without runs), the number of units
-- (0 when the language has none) and their entropy min / median / max (`langfeat identify`'s summary).
-- inputs: stat_lang_totals, report_set_langs
-- params: set_name VARCHAR; run_ids VARCHAR[] (the set's runs; [] = none)
CREATE OR REPLACE MACRO report_set_summary(set_name, run_ids) AS TABLE
SELECT
    coalesce(t.lang, s.lang)    AS lang,
    t.lang_name,
    t.n_docs                    AS docs,
    t.n_tokens                  AS tokens,
    coalesce(s.n, 0)::BIGINT    AS n,
    s.entropy_min, s.entropy_median, s.entropy_max
FROM stat_lang_totals(run_ids) t
FULL OUTER JOIN (SELECT * FROM report_set_langs WHERE name = set_name) s USING (lang);
