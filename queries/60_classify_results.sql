-- classify_docs: the documents of every `langfeat classify` result (file schema in db/tables.sql), with the
-- result name; run_id / doc_id point at the ingested run whose events the SAE classifiers count.
CREATE OR REPLACE VIEW classify_docs AS
SELECT name, classifier, doc, label, config, "row", run_id, doc_id, text
FROM read_parquet('{store}/results/classify_docs/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- classify_langs: the candidate languages of each classify result and their number of units (features or
-- neurons at the hooked layers; sae-norm divides by it).
CREATE OR REPLACE VIEW classify_langs AS
SELECT name, lang, n_units
FROM read_parquet('{store}/results/classify_langs/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- classify_units: the feature-set units (kind sae | neuron) each classify result voted with.
CREATE OR REPLACE VIEW classify_units AS
SELECT name, kind, lang, layer, feature, act_min, act_max
FROM read_parquet('{store}/results/classify_units/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- classify_scores: per (result, document, language) scores computed outside SQL: neuron-count votes over
-- mlp.act_fn outputs and fastText probabilities.
CREATE OR REPLACE VIEW classify_scores AS
SELECT name, doc, lang, score
FROM read_parquet('{store}/results/classify_scores/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';

-- feature_explanations: natural-language explanations of SAE features, one set per imported name
-- (`langfeat import-explanations`).
CREATE OR REPLACE VIEW feature_explanations AS
SELECT name, layer, feature, explanation, source
FROM read_parquet('{store}/results/feature_explanations/name=*/*.parquet',
                  hive_partitioning = true, hive_types = {'name': VARCHAR}, union_by_name = true)
WHERE name <> '_schema';
