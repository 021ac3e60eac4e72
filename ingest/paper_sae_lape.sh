#!/usr/bin/env bash
# Reproduce the SAE-LAPE paper's identification (arXiv 2507.11230) with langfeat:
# Llama-3.2-1B, EleutherAI/sae-Llama-3.2-1B-131k at model.layers.{0..15}.mlp, XNLI train[0:1000] (10 languages)
# + PAWS-X train[0:1000] (7) + FLORES+ dev (997 rows, 15), merged per language; r = 0.5, example rate 0.98.
# Needs a GPU, hub access to the model, the SAEs and the (gated) FLORES+ dataset. Usage:
#   LANGFEAT_STORE=/path/to/store bash ingest/paper_sae_lape.sh
# Every name can be replaced through the environment (the defaults are the paper's), e.g. to try the recipe on
# another model or on local files: MODEL, SAE or LOCAL_SAE_DIR (a folder of <hookpoint>/cfg.json), LAYERS,
# XNLI_DATA / PAWSX_DATA / FLORES_DATA (hub ids or local files with {lang}), ROWS / FLORES_ROWS (rows per
# language), UNITS_PER_LAYER (LAPE), SHARED_COUNTS (the --shared-count values), OUT (the .pt folder) and
# LANGFEAT_ARGS (extra ingest flags, e.g. "--device cpu --no-progress").
set -euo pipefail

MODEL=${MODEL:-meta-llama/Llama-3.2-1B}
SAE=${SAE:-EleutherAI/sae-Llama-3.2-1B-131k}
LAYERS=${LAYERS:-'model.layers.{0..15}.mlp'}
XNLI_DATA=${XNLI_DATA:-facebook/xnli}
PAWSX_DATA=${PAWSX_DATA:-google-research-datasets/paws-x}
FLORES_DATA=${FLORES_DATA:-openlanguagedata/flores_plus}
ROWS=${ROWS:-1000}
FLORES_ROWS=${FLORES_ROWS:-997}
UNITS_PER_LAYER=${UNITS_PER_LAYER:-8192}
SHARED_COUNTS=${SHARED_COUNTS:-$(seq 2 15)}
OUT=${OUT:-paper_sets}
read -r -a EXTRA <<< "${LANGFEAT_ARGS:-}"
if [ -n "${LOCAL_SAE_DIR:-}" ]; then
  SAE_INGEST=(--local-sae-dir "$LOCAL_SAE_DIR"); SAE_FILTER=()
else
  SAE_INGEST=(--sae-model "$SAE"); SAE_FILTER=(--sae-model "$SAE")
fi
XNLI=(en de fr hi es th bg ru tr vi)
PAWSX=(en de fr es ja ko zh)
FLORES=(eng_Latn deu_Latn fra_Latn ita_Latn por_Latn hin_Deva spa_Latn tha_Thai bul_Cyrl rus_Cyrl tur_Latn
        vie_Latn jpn_Jpan kor_Hang cmn_Hans)
# The paper's runs are fp32 with one example per forward pass; batching does not change the counts.
COMMON=(--layer "$LAYERS" "${SAE_INGEST[@]}" --neurons --dtype float32 --batch 16 "${EXTRA[@]}")

lang_flags() { for l in "$@"; do printf -- '--lang\n%s\n' "$l"; done; }

# 1. Ingest: SAE events + feature_counts, and neuron_counts (mlp.act_fn > 0) for the LAPE baseline, per language.
mapfile -t X < <(lang_flags "${XNLI[@]}")
mapfile -t P < <(lang_flags "${PAWSX[@]}")
mapfile -t F < <(lang_flags "${FLORES[@]}")
langfeat ingest "$MODEL" "$XNLI_DATA" --split train "${X[@]}" --start 0 --end "$ROWS" "${COMMON[@]}"
langfeat ingest "$MODEL" "$PAWSX_DATA" --split train "${P[@]}" --start 0 --end "$ROWS" "${COMMON[@]}"
langfeat ingest "$MODEL" "$FLORES_DATA" --split dev "${F[@]}" --start 0 --end "$FLORES_ROWS" "${COMMON[@]}"

# The paper's 32 dataset:language pairs (bracex), merged per language (15 languages).
CONFIGS=(
  "$XNLI_DATA:{en,de,fr,hi,es,th,bg,ru,tr,vi}"
  "$PAWSX_DATA:{en,de,fr,es,ja,ko,zh}"
  "$FLORES_DATA:{eng_Latn,deu_Latn,fra_Latn,ita_Latn,por_Latn,hin_Deva,spa_Latn,tha_Thai,bul_Cyrl,rus_Cyrl,tur_Latn,vie_Latn,jpn_Jpan,kor_Hang,cmn_Hans}"
)
ID=(langfeat identify --model "$MODEL" "${SAE_FILTER[@]}" --layer "$LAYERS" --dataset-configs "${CONFIGS[@]}"
    --topk-threshold-ratio 0.5 --example-rate 0.98 --algorithm sae-lape)

# 2. SAE-LAPE sets (the paper's identify_sae_lape_*.sh); --export-pt writes the paper's .pt schema as well.
mkdir -p "$OUT"
"${ID[@]}" --lang-specific --name lape_all --export-pt "$OUT"/lape_all.pt
"${ID[@]}" --lang-specific --top 10 --name lape_top_10_by_entropy --export-pt "$OUT"/lape_top_10_by_entropy.pt
"${ID[@]}" --lang-specific --top 10 --top-by-frequency --name lape_top_10_by_freq \
    --export-pt "$OUT"/lape_top_10_by_freq.pt
"${ID[@]}" --lang-specific --top 1 --top-per-layer --name lape_top_1_per_layer_by_entropy \
    --export-pt "$OUT"/lape_top_1_per_layer_by_entropy.pt
"${ID[@]}" --lang-specific --top 1 --top-per-layer --top-by-frequency --name lape_top_1_per_layer_by_freq \
    --export-pt "$OUT"/lape_top_1_per_layer_by_freq.pt
for count in $SHARED_COUNTS; do
  "${ID[@]}" --lang-shared --shared-count "$count" --name "lape_shared_${count}" \
      --export-pt "$OUT/lape_shared_${count}.pt"
done

# 3. The neuron baseline (original LAPE on mlp.act_fn counts; top_rate 0.01, filter/bar 0.95).
langfeat identify --model "$MODEL" --layer "$LAYERS.act_fn" --dataset-configs "${CONFIGS[@]}" \
    --algorithm lape --units-per-layer "$UNITS_PER_LAYER" --name lape_neuron --export-pt "$OUT"/lape_neuron.pt

# 4. Overview: the sets and the lape_all table per language x layer (the paper reports 540 features).
langfeat sets
langfeat report features lape_all
