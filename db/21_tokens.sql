-- tokens: the token ids fed to the model (pos 0 is BOS when the run adds one), per document.
CREATE OR REPLACE VIEW tokens AS
SELECT run_id, lang, doc_id, pos, token_id
FROM read_parquet(['{store}/data/run_id=_schema/lang=und/tokens/part-schema.parquet',  -- placeholder first: the view binds to it
                   '{store}/data/run_id=*/lang=*/tokens/*.parquet'],
                  hive_partitioning = true,
                  hive_types = {'run_id': VARCHAR, 'lang': VARCHAR})
WHERE run_id IN (SELECT run_id FROM runs WHERE status = 'complete');  -- committed runs only
