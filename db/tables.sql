-- Storage schema of langfeat: the columns of each Parquet file in the store.
-- Files live under <store>/data/run_id=<run_id>/lang=<lang>/<table>/...; run_id and lang are hive
-- partition columns taken from the path (so they are not repeated inside the files), as is layer for events
-- and neuron_docs.
-- This file is the single definition of the file schemas: langfeat derives its Arrow writer schemas from it.
-- A column annotated "-- parquet: float16" is written as Parquet FLOAT16 (DuckDB reads it as FLOAT).

-- events/layer=<layer>/part-<shard>.parquet: one row per (token, SAE feature) with activation > 0.
-- Sorted by doc_id, pos, feature within a file.
CREATE TABLE events (
    doc_id  BIGINT  NOT NULL,  -- unique in the store: (run_num << 40) | source row
    pos     INTEGER NOT NULL,  -- token position; 0 is BOS
    feature INTEGER NOT NULL,  -- SAE latent id
    act     FLOAT   NOT NULL,  -- activation (> 0) -- parquet: float16
    dataset VARCHAR NOT NULL   -- the run's dataset (constant per file; costs nothing after encoding)
);

-- docs/part-<shard>.parquet: one row per ingested text.
CREATE TABLE docs (
    doc_id   BIGINT  NOT NULL,
    dataset  VARCHAR NOT NULL,
    "row"    BIGINT  NOT NULL,  -- row index in the source split (absolute, start included)
    n_tokens INTEGER NOT NULL,  -- tokens fed to the model, BOS included
    text     VARCHAR NOT NULL   -- the formatted text (template applied)
);

-- tokens/part-<shard>.parquet: the token ids of every document.
CREATE TABLE tokens (
    doc_id   BIGINT  NOT NULL,
    pos      INTEGER NOT NULL,
    token_id INTEGER NOT NULL
);

-- feature_counts/part-0.parquet: per (layer, feature) aggregates over the run's events (act > 0).
CREATE TABLE feature_counts (
    layer     INTEGER NOT NULL,
    feature   INTEGER NOT NULL,
    tok_count BIGINT  NOT NULL,  -- tokens where the feature fired (BOS included)
    doc_count BIGINT  NOT NULL,  -- documents where it fired at least once
    act_sum   DOUBLE  NOT NULL,
    act_max   FLOAT   NOT NULL,
    act_min   FLOAT   NOT NULL
);

-- neuron_counts/part-0.parquet: the same aggregates for MLP neurons (mlp.act_fn output > 0).
CREATE TABLE neuron_counts (
    layer     INTEGER NOT NULL,
    neuron    INTEGER NOT NULL,
    tok_count BIGINT  NOT NULL,
    doc_count BIGINT  NOT NULL,
    act_sum   DOUBLE  NOT NULL,  -- over activations > 0
    act_max   FLOAT   NOT NULL,
    act_min   FLOAT   NOT NULL   -- smallest activation > 0
);

-- neuron_docs/layer=<layer>/part-<shard>.parquet (only in runs ingested with --neuron-docs): one row per
-- (document, MLP neuron) with at least one mlp.act_fn output > 0 in the document, over the positions
-- neuron_counts counts (so tok_count summed over a run's documents is neuron_counts.tok_count).
-- Sorted by doc_id, neuron within a file.
CREATE TABLE neuron_docs (
    doc_id    BIGINT  NOT NULL,
    neuron    INTEGER NOT NULL,  -- neuron index in the layer's mlp.act_fn output
    tok_count INTEGER NOT NULL,  -- tokens of the document where the output > 0 (BOS included)
    act_sum   FLOAT   NOT NULL   -- sum of those outputs
);

-- sets/name=<name>/features.parquet: a named feature set (the result of `langfeat identify` or an import);
-- name is a hive partition column. Its parameters live beside it in sets/name=<name>/params.json.
CREATE TABLE feature_sets (
    algorithm VARCHAR NOT NULL,  -- sae-lape | lape | nu | sae-probe | imported
    kind      VARCHAR NOT NULL,  -- sae | neuron
    lang      VARCHAR NOT NULL,  -- canonical language tag
    layer     INTEGER NOT NULL,
    feature   INTEGER NOT NULL,  -- SAE latent id, or neuron index for kind = neuron
    entropy   DOUBLE,            -- entropy of the unit's normalised activation probabilities
    prob      DOUBLE,            -- activation probability p of this language
    act_max   FLOAT,             -- pooled over languages (the paper's global max / min / avg)
    act_min   FLOAT,
    act_avg   FLOAT,
    rank      INTEGER,           -- order within the language's list (ascending entropy unless by frequency)
    score     DOUBLE             -- the method's score of the unit for lang: ν (nu), the probe weight (sae-probe)
);

-- results/ppl_results/name=<name>/part-0.parquet: `langfeat ppl`, one row per (intervention, sentence);
-- name is a hive partition column. The baseline rows (intervention = 'none', int_lang NULL) sit beside the
-- intervened rows of the same name, so ΔPPL is always paired sentence by sentence.
CREATE TABLE ppl_results (
    model        VARCHAR NOT NULL,
    dataset      VARCHAR NOT NULL,
    split        VARCHAR NOT NULL,
    intervention VARCHAR NOT NULL,  -- none | sae-features | sae-ablate | neuron | diffmean
    int_lang     VARCHAR,           -- intervened language (canonical tag); NULL for the baseline
    lang         VARCHAR NOT NULL,  -- evaluated language (canonical tag)
    config       VARCHAR NOT NULL,  -- the dataset config / language value as given
    "row"        BIGINT  NOT NULL,  -- sentence index in the source split (start included)
    n_targets    INTEGER NOT NULL,  -- predicted tokens (all but the first; BOS is never a target)
    nll          DOUBLE  NOT NULL,  -- mean negative log-likelihood per target token, nats
    ppl          DOUBLE  NOT NULL,  -- exp(nll)
    n_units      INTEGER NOT NULL,  -- features / neurons edited for int_lang at the hooked layers (diffmean: layers)
    multiplier   DOUBLE,            -- α (sae-features, sae-ablate, neuron scaling, diffmean)
    value        DOUBLE,            -- the fixed value (neuron fixed)
    source       VARCHAR            -- the feature set (or DiffMean vector set) intervened with; NULL for the baseline
);

-- results/generate_results/name=<name>/part-0.parquet: `langfeat generate`, one row per generated sample,
-- judged by the fastText language identifier.
CREATE TABLE generate_results (
    model          VARCHAR NOT NULL,
    lang           VARCHAR NOT NULL,  -- steered-towards language (canonical tag)
    multiplier     DOUBLE  NOT NULL,  -- α; 0 is the unsteered baseline
    last_token     BOOLEAN NOT NULL,  -- steering at the newest position only (else at every position)
    sample         INTEGER NOT NULL,  -- 0 .. times-1
    seed           BIGINT  NOT NULL,  -- seed set before sampling this sample's batch
    prompt         VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,  -- the continuation, special tokens removed
    n_new_tokens   INTEGER NOT NULL,
    stopped_eos    BOOLEAN NOT NULL,  -- generation ended with EOS before max_new_tokens
    n_units        INTEGER NOT NULL,  -- features used for the steering vector (diffmean: layers steered)
    lid_lang       VARCHAR,           -- language the identifier assigns to text (canonical tag); NULL if not judged
    lid_prob       DOUBLE,            -- its confidence
    method         VARCHAR,           -- sae-features | diffmean | prompting (NULL in older results: sae-features)
    source         VARCHAR,           -- the feature set or DiffMean vector set steered with; NULL for prompting
    n_chars        INTEGER,           -- characters (code points) of text
    flu_targets    INTEGER,           -- tokens of text scored for fluency (BOS + text re-tokenized, BOS not a target)
    flu_nll        DOUBLE,            -- their summed negative log-likelihood under the unsteered model, nats
    char_ppl       DOUBLE             -- fluency: exp(flu_nll / n_chars), per-character perplexity; NULL if empty/unscored
);

-- results/diffmean_means/name=<name>/part-0.parquet: `langfeat identify --algorithm diffmean`, the mean MLP output
-- of each language at each layer over the stored tokens of the identification runs (BOS position excluded), one row
-- per (language, layer, dimension). The DiffMean steering vectors are the view diffmean_vectors over these means.
CREATE TABLE diffmean_means (
    lang     VARCHAR NOT NULL,  -- canonical tag
    layer    INTEGER NOT NULL,
    dim      INTEGER NOT NULL,  -- 0 .. d_model-1
    mean     DOUBLE  NOT NULL,  -- mean over the language's token positions of the MLP output's dimension dim
    n_tokens BIGINT  NOT NULL,  -- token positions averaged
    n_docs   BIGINT  NOT NULL   -- documents they came from
);

-- results/classify_docs/name=<name>/part-0.parquet: `langfeat classify`, one row per classified document.
CREATE TABLE classify_docs (
    classifier VARCHAR NOT NULL,  -- sae-count | sae-min-max | sae-norm | sae-probe | neuron-count | fasttext
    doc        INTEGER NOT NULL,  -- 0 .. n-1 within the result
    label      VARCHAR NOT NULL,  -- true language (canonical tag)
    config     VARCHAR NOT NULL,  -- the dataset config / label value as given
    "row"      BIGINT  NOT NULL,  -- row in the source split (start included)
    run_id     VARCHAR,           -- the ingested run holding the document's events (SAE classifiers only)
    doc_id     BIGINT,            -- the document's doc_id in that run
    text       VARCHAR NOT NULL,
    dataset    VARCHAR,           -- the evaluated dataset (constant per result)
    feature_set VARCHAR           -- the feature set voted with (sae-probe: the set it stored); NULL for fasttext
);

-- results/classify_langs/name=<name>/part-0.parquet: the candidate languages of a classification.
CREATE TABLE classify_langs (
    lang    VARCHAR NOT NULL,  -- canonical tag
    n_units INTEGER NOT NULL,  -- units of the language in the set at the hooked layers; 0 for fasttext
    bias    DOUBLE             -- sae-probe: the probe's intercept for lang (NULL otherwise)
);

-- results/classify_units/name=<name>/part-0.parquet: the feature-set units a classification voted with.
CREATE TABLE classify_units (
    kind    VARCHAR NOT NULL,  -- sae | neuron
    lang    VARCHAR NOT NULL,
    layer   INTEGER NOT NULL,
    feature INTEGER NOT NULL,  -- SAE latent id or neuron index
    act_min FLOAT,             -- the set's global min / max activation (sae-min-max)
    act_max FLOAT,
    weight  DOUBLE,            -- sae-probe: the probe's coefficient of the unit for lang (NULL otherwise)
    value   VARCHAR            -- sae-probe: the per-document unit value, count | max (probe_value)
);

-- results/classify_scores/name=<name>/part-0.parquet: scores computed outside SQL, one row per
-- (document, candidate language): neuron-count votes and fastText probabilities.
CREATE TABLE classify_scores (
    doc   INTEGER NOT NULL,
    lang  VARCHAR NOT NULL,
    score DOUBLE  NOT NULL
);

-- results/feature_explanations/name=<name>/part-0.parquet: natural-language explanations of SAE features
-- (e.g. imported from delphi's explanations/layers.N.mlp_latent<id>.txt files).
CREATE TABLE feature_explanations (
    layer       INTEGER NOT NULL,
    feature     INTEGER NOT NULL,
    explanation VARCHAR NOT NULL,
    source      VARCHAR            -- where the explanation came from (file, tool)
);

-- results/interpret_explanations/name=<name>/part-0.parquet: `langfeat interpret`, one explanation per feature
-- (written from the top-activating examples); the same rows also land in feature_explanations.
CREATE TABLE interpret_explanations (
    feature_set VARCHAR NOT NULL,  -- the explained feature set (languages come from it)
    layer       INTEGER NOT NULL,
    feature     INTEGER NOT NULL,
    explainer   VARCHAR NOT NULL,  -- openai:MODEL | local:MODEL
    n_train     INTEGER NOT NULL,  -- activating examples shown to the explainer
    explanation VARCHAR NOT NULL
);

-- results/interpret_predictions/name=<name>/part-0.parquet: `langfeat interpret`, one row per (scorer, feature,
-- test example): whether the example activates the feature and what the scorer model answered.
CREATE TABLE interpret_predictions (
    scorer     VARCHAR NOT NULL,  -- detection | fuzz
    layer      INTEGER NOT NULL,
    feature    INTEGER NOT NULL,
    example    INTEGER NOT NULL,  -- example number within the feature's test examples
    quantile   INTEGER,           -- activation quantile of an activating example (1 = lowest); NULL otherwise
    activating BOOLEAN NOT NULL,  -- ground truth: an activating example (fuzz: correctly marked)
    prediction BOOLEAN,           -- the scorer's answer; NULL when it could not be parsed
    prob       DOUBLE             -- the scorer's probability of "yes" where log-probabilities exist
);

-- results/interpret_cache/name=<name>/part-*.parquet: every prompt sent by `langfeat interpret` and its answer,
-- appended as they arrive, so a rerun (under any result name) answers from here instead of the model.
CREATE TABLE interpret_cache (
    key        VARCHAR NOT NULL,  -- sha256 of (explainer, request)
    explainer  VARCHAR NOT NULL,
    kind       VARCHAR NOT NULL,  -- explain | detection | fuzz
    layer      INTEGER NOT NULL,
    feature    INTEGER NOT NULL,
    request    VARCHAR NOT NULL,  -- the messages and settings, as JSON
    response   VARCHAR NOT NULL,  -- the answer text (JSON of per-option probabilities for local scorers)
    created_at VARCHAR NOT NULL   -- UTC, ISO 8601
);
