-- report_sets: one row per feature set: its algorithm and kind, distinct units, (language, unit) memberships,
-- languages, layer range, creation time and parameters (params.json); sets without rows are listed too.
-- inputs: feature_sets, feature_set_params
CREATE OR REPLACE VIEW report_sets AS
WITH s AS (
    SELECT
        name,
        string_agg(DISTINCT algorithm, ',' ORDER BY algorithm)  AS algorithm,
        string_agg(DISTINCT kind, ',' ORDER BY kind)            AS kind,
        count(DISTINCT (layer, feature))                        AS features,
        count(*)                                                AS memberships,
        count(DISTINCT lang)                                    AS languages,
        min(layer)                                              AS layer_min,
        max(layer)                                              AS layer_max
    FROM feature_sets
    GROUP BY name
)
SELECT
    coalesce(s.name, p.name)                                     AS name,
    coalesce(s.algorithm, p.params ->> 'algorithm')              AS algorithm,
    coalesce(s.kind, p.params ->> 'kind')                        AS kind,
    coalesce(s.features, 0)                                      AS features,
    coalesce(s.memberships, 0)                                   AS memberships,
    coalesce(s.languages, 0)                                     AS languages,
    s.layer_min,
    s.layer_max,
    p.params ->> 'created_at'                                    AS created,
    p.params                                                     AS params
FROM s FULL OUTER JOIN feature_set_params p ON p.name = s.name
ORDER BY name;
