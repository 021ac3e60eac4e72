#!/usr/bin/env bash
# Reproduce the SAE-LAPE paper's identification (arXiv 2507.11230) with langfeat:
# Llama-3.2-1B, EleutherAI/sae-Llama-3.2-1B-131k at model.layers.{0..15}.mlp, XNLI train[0:1000] (10 languages)
# + PAWS-X train[0:1000] (7) + FLORES+ dev (997 rows, 15), merged per language; r = 0.5, example rate 0.98.
# Needs a GPU, hub access to the model, the SAEs and the (gated) FLORES+ dataset. Usage:
#   LANGFEAT_STORE=/path/to/store bash ingest/paper_sae_lape.sh
set -euo pipefail

MODEL=meta-llama/Llama-3.2-1B
SAE=EleutherAI/sae-Llama-3.2-1B-131k
LAYERS='model.layers.{0..15}.mlp'
XNLI=(en de fr hi es th bg ru tr vi)
PAWSX=(en de fr es ja ko zh)
FLORES=(eng_Latn deu_Latn fra_Latn ita_Latn por_Latn hin_Deva spa_Latn tha_Thai bul_Cyrl rus_Cyrl tur_Latn
        vie_Latn jpn_Jpan kor_Hang cmn_Hans)
# The paper's runs are fp32 with one example per forward pass; batching does not change the counts.
COMMON=(--layer "$LAYERS" --sae-model "$SAE" --neurons --dtype float32 --batch 16)

lang_flags() { for l in "$@"; do printf -- '--lang\n%s\n' "$l"; done; }

# 1. Ingest: SAE events + feature_counts, and neuron_counts (mlp.act_fn > 0) for the LAPE baseline, per language.
mapfile -t X < <(lang_flags "${XNLI[@]}")
mapfile -t P < <(lang_flags "${PAWSX[@]}")
mapfile -t F < <(lang_flags "${FLORES[@]}")
langfeat ingest "$MODEL" facebook/xnli --split train "${X[@]}" --start 0 --end 1000 "${COMMON[@]}"
langfeat ingest "$MODEL" google-research-datasets/paws-x --split train "${P[@]}" --start 0 --end 1000 "${COMMON[@]}"
langfeat ingest "$MODEL" openlanguagedata/flores_plus --split dev "${F[@]}" --start 0 --end 997 "${COMMON[@]}"

# The paper's 32 dataset:language pairs (bracex), merged per language (15 languages).
CONFIGS=(
  'facebook/xnli:{en,de,fr,hi,es,th,bg,ru,tr,vi}'
  'google-research-datasets/paws-x:{en,de,fr,es,ja,ko,zh}'
  'openlanguagedata/flores_plus:{eng_Latn,deu_Latn,fra_Latn,ita_Latn,por_Latn,hin_Deva,spa_Latn,tha_Thai,bul_Cyrl,rus_Cyrl,tur_Latn,vie_Latn,jpn_Jpan,kor_Hang,cmn_Hans}'
)
ID=(langfeat identify --model "$MODEL" --sae-model "$SAE" --layer "$LAYERS" --dataset-configs "${CONFIGS[@]}"
    --topk-threshold-ratio 0.5 --example-rate 0.98 --algorithm sae-lape)

# 2. SAE-LAPE sets (the paper's identify_sae_lape_*.sh); --export-pt writes the paper's .pt schema as well.
mkdir -p paper_sets
"${ID[@]}" --lang-specific --name lape_all --export-pt paper_sets/lape_all.pt
"${ID[@]}" --lang-specific --top 10 --name lape_top_10_by_entropy --export-pt paper_sets/lape_top_10_by_entropy.pt
"${ID[@]}" --lang-specific --top 10 --top-by-frequency --name lape_top_10_by_freq \
    --export-pt paper_sets/lape_top_10_by_freq.pt
"${ID[@]}" --lang-specific --top 1 --top-per-layer --name lape_top_1_per_layer_by_entropy \
    --export-pt paper_sets/lape_top_1_per_layer_by_entropy.pt
"${ID[@]}" --lang-specific --top 1 --top-per-layer --top-by-frequency --name lape_top_1_per_layer_by_freq \
    --export-pt paper_sets/lape_top_1_per_layer_by_freq.pt
for count in $(seq 2 15); do
  "${ID[@]}" --lang-shared --shared-count "$count" --name "lape_shared_${count}" \
      --export-pt "paper_sets/lape_shared_${count}.pt"
done

# 3. The neuron baseline (original LAPE on mlp.act_fn counts; top_rate 0.01, filter/bar 0.95).
langfeat identify --model "$MODEL" --layer 'model.layers.{0..15}.mlp.act_fn' --dataset-configs "${CONFIGS[@]}" \
    --algorithm lape --units-per-layer 8192 --name lape_neuron --export-pt paper_sets/lape_neuron.pt

# 4. Overview: the sets and the lape_all table per language x layer (the paper reports 540 features).
langfeat sets
langfeat report features lape_all
