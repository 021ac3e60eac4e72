-- classify_docs: the documents of every `langfeat classify` result (file schema in db/tables.sql), with the
-- result name, the evaluated dataset and the feature set used; run_id / doc_id point at the ingested run whose
-- events the SAE classifiers count.
-- inputs: results/classify_docs/name=*/*.parquet (source)
CREATE OR REPLACE VIEW classify_docs AS
SELECT name, classifier, doc, label, config, "row", run_id, doc_id, text, dataset, feature_set
FROM {source:classify_docs};
