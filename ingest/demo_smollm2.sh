#!/usr/bin/env bash
# The main job end to end on the offline default model (SmolLM2-135M-Instruct, shipped as GGUF in a wheel):
# train small SAEs on FLORES-200 text, ingest SAE features + MLP neurons, identify language-specific features
# (SAE-LAPE) and neurons (LAPE), report them, and identify languages of NTREX news sentences with them.
# About 5 minutes on 2 CPU cores. Usage: ingest/demo_smollm2.sh [DATA_DIR] [STORE]
set -euo pipefail
DATA=${1:-../shared/data}
STORE=${2:-demo-store}
LF=${LANGFEAT:-langfeat}
LANGS=(eng_Latn deu_Latn fra_Latn spa_Latn tur_Latn vie_Latn rus_Cyrl hin_Deva)
NTREX=(eng-US deu fra spa tur vie rus hin)
FLORES="$DATA/flores200_devtest/{lang}.devtest.gz"
LAYERS='model.layers.{0..7}.mlp'
lang_args() { for l in "$@"; do printf -- '--lang %s ' "$l"; done; }
export LANGFEAT_STORE="$STORE" COLUMNS=${COLUMNS:-140}  # wide rich tables when the output is not a terminal

echo "== 1/6 train SAEs (2048 latents, k=32) on FLORES devtest rows 300-420 of 8 languages" >&2
[ -f "$STORE-saes/layers.7.mlp/cfg.json" ] || $LF train-sae smollm2 "$FLORES" $(lang_args "${LANGS[@]}") \
  --start 300 --end 420 --layer "$LAYERS" --out-dir "$STORE-saes" --num-latents 2048 --k 32 --lr 1e-3

echo "== 2/6 ingest FLORES devtest rows 0-200: SAE features + neurons of layers 0-7" >&2
$LF ingest smollm2 "$FLORES" $(lang_args "${LANGS[@]}") --start 0 --end 200 --layer "$LAYERS" \
  --local-sae-dir "$STORE-saes" --neurons --batch 16

echo "== 3/6 identify language-specific SAE features (SAE-LAPE, r=0.5, example rate 0.98) and neurons (LAPE)" >&2
$LF identify --algorithm sae-lape --layer "$LAYERS" --topk-threshold-ratio 0.5 --example-rate 0.98 \
  --lang-specific --name demo-sae --overwrite
$LF identify --algorithm lape --layer 'model.layers.{0..7}.mlp.act_fn' --name demo-neurons --overwrite

echo "== 4/6 reports" >&2
$LF runs
$LF report features demo-sae

echo "== 5/6 language identification of NTREX sentences 1-101 (different domain) with the features" >&2
NTREX_PATH="$DATA/ntrex128/newstest2019-ref.{lang}.txt"
for clf in sae-count sae-norm; do
  $LF classify "$NTREX_PATH" $(lang_args "${NTREX[@]}") --start 1 --end 101 --classifier-type "$clf" \
    --model smollm2 --local-sae-dir "$STORE-saes" --feature-set demo-sae --name "demo-$clf"
done
$LF classify "$NTREX_PATH" $(lang_args "${NTREX[@]}") --start 1 --end 101 --classifier-type fasttext --name demo-fasttext
$LF report classify demo-sae-count demo-sae-norm demo-fasttext

echo "== 6/6 SQL over the store" >&2
$LF sql "SELECT lang, count(*) AS features, round(median(entropy), 3) AS median_entropy
         FROM feature_sets WHERE name = 'demo-sae' GROUP BY lang ORDER BY features DESC"
