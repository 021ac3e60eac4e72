"""Shared offline fixtures: a tiny Llama + tokenizer and sparsify SAEs built in code, and shared/ data."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if not torch.cuda.is_available():  # Triton kernels on CPU tensors: the interpreter, chosen before triton's import
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED = Path(os.environ.get("LANGFEAT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DATA = SHARED / "data"
TOY_LAYERS = [0, 1, 2, 3]


def flores_lines(code: str, n: int) -> list[str]:
    """The first ``n`` FLORES-200 devtest sentences of ``code`` (e.g. ``tha_Thai``), read from shared/."""
    with gzip.open(DATA / "flores200_devtest" / f"{code}.devtest.gz", "rt", encoding="utf-8") as fh:
        return [next(fh).rstrip("\n") for _ in range(n)]


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory) -> Path:
    """A saved tiny LlamaForCausalLM (4 layers, d_model 32, MLP 64) with a BOS-adding BPE tokenizer."""
    from langfeat.toy import DEFAULT_TEXTS, build_model

    out = tmp_path_factory.mktemp("toy_model")
    texts = list(DEFAULT_TEXTS)
    if DATA.exists():
        for code in ["eng_Latn", "deu_Latn", "tha_Thai", "jpn_Jpan", "hin_Deva", "rus_Cyrl", "zho_Hans"]:
            texts += flores_lines(code, 40)
    build_model(out, texts=texts, n_layers=len(TOY_LAYERS))
    return out


@pytest.fixture(scope="session")
def toy_sae_dir(tmp_path_factory) -> Path:
    """sparsify SAEs (128 latents, k=8) at ``layers.{0..3}.mlp`` for the toy model."""
    from langfeat.toy import build_saes

    out = tmp_path_factory.mktemp("toy_saes")
    build_saes(out, TOY_LAYERS)
    return out


@pytest.fixture(scope="module")
def toy(toy_model_dir, toy_sae_dir):
    """The toy model, its tokenizer and its SAEs ``{layer: SparseCoder}`` at every layer, loaded once per module."""
    from langfeat.models import load_model, load_sae

    model, tokenizer = load_model(str(toy_model_dir), device="cpu")
    saes = {layer: load_sae(f"layers.{layer}.mlp", local_sae_dir=toy_sae_dir) for layer in TOY_LAYERS}
    return model, tokenizer, saes
