"""A tiny, randomly initialised Llama with its own byte-level BPE tokenizer, and sparsify SAEs for it.

Built entirely in code (nothing is downloaded): tests, benchmarks and the documented end-to-end examples
use it. The tokenizer adds BOS (``<s>``) like Llama's; its vocabulary is trained on the given texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

DEFAULT_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "तेज़ भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है।",
    "สุนัขจิ้งจอกสีน้ำตาลกระโดดข้ามสุนัขขี้เกียจ",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다.",
    "敏捷的棕色狐狸跳过了懒狗。",
]


def build_tokenizer(out_dir: str | Path, texts: list[str] | None = None, vocab_size: int = 512):
    """Train a byte-level BPE tokenizer on ``texts`` and save it (with BOS added) to ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts or DEFAULT_TEXTS)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", add_bos_token=True
    )
    fast.save_pretrained(str(out_dir))
    return fast


def build_model(
    out_dir: str | Path,
    texts: list[str] | None = None,
    n_layers: int = 4,
    d_model: int = 32,
    d_mlp: int = 64,
    vocab_size: int = 512,
    seed: int = 0,
):
    """Save a random ``LlamaForCausalLM`` and its tokenizer to ``out_dir``; return (model, tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(out_dir, texts, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init give varied, non-degenerate activations
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, 0.2)
    model.eval()
    model.save_pretrained(str(out_dir))
    return model, tokenizer


def build_saes(
    out_dir: str | Path,
    layers: list[int],
    d_in: int = 32,
    num_latents: int = 128,
    k: int = 8,
    seed: int = 0,
) -> dict[str, Path]:
    """Save one random sparsify TopK SAE per ``layers.N.mlp`` hookpoint under ``out_dir``."""
    from langfeat.layers import mlp_path
    from langfeat.models import import_sparsify

    import_sparsify()
    from sparsify import SparseCoder, SparseCoderConfig

    out_dir = Path(out_dir)
    paths = {}
    for layer in layers:
        torch.manual_seed(seed + layer)
        sae = SparseCoder(d_in, SparseCoderConfig(num_latents=num_latents, k=k))
        with torch.no_grad():
            sae.b_dec.normal_(0.0, 0.05)
            sae.encoder.bias.normal_(0.0, 0.05)
        hookpoint = mlp_path("", layer)
        sae.save_to_disk(out_dir / hookpoint)
        paths[hookpoint] = out_dir / hookpoint
    (out_dir / "README.json").write_text(json.dumps({"toy": True, "layers": layers}))
    return paths
