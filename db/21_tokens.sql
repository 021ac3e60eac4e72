-- tokens: the token ids fed to the model (pos 0 is BOS when the run adds one), per document.
-- inputs: data/run_id=*/lang=*/tokens/*.parquet (source)
CREATE OR REPLACE VIEW tokens AS
SELECT run_id, lang, doc_id, pos, token_id
FROM {source:tokens};
