"""train-sae: sparsify training through the CLI on the toy model, checked against the untrained initialisation."""

from __future__ import annotations

import torch
from hand import capture
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat.cli import app


def _fvu(sae, x: torch.Tensor) -> float:
    enc = sae.encode(x)
    recon = sae.decode(enc.top_acts, enc.top_indices)
    return float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_train_sae_cli_learns(toy_model_dir, tmp_path):
    from sparsify import SparseCoder, SparseCoderConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for code in ("eng_Latn", "deu_Latn"):
        (tmp_path / f"{code}.txt").write_text("\n".join(flores_lines(code, 60)) + "\n", encoding="utf-8")
    out = tmp_path / "saes"
    result = CliRunner().invoke(app, [
        "train-sae", str(toy_model_dir), str(tmp_path / "{lang}.txt"), "--lang", "eng_Latn", "--lang", "deu_Latn",
        "--layer", "model.layers.{1,2}.mlp", "--out-dir", str(out), "--num-latents", "64", "--k", "4",
        "--ctx-len", "32", "--batch-size", "4", "--lr", "3e-3", "--device", "cpu",
    ])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["layers.1.mlp", "layers.2.mlp"]

    model = AutoModelForCausalLM.from_pretrained(toy_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(toy_model_dir)
    x = capture(model, tok(" ".join(flores_lines("eng_Latn", 5)))["input_ids"], [1])[1]
    trained = SparseCoder.load_from_disk(out / "layers.1.mlp")
    assert (trained.cfg.num_latents, trained.cfg.k) == (64, 4)
    torch.manual_seed(0)  # the trainer's init seed: the same SAE before training
    untrained = SparseCoder(x.shape[-1], SparseCoderConfig(num_latents=64, k=4))
    with torch.no_grad():
        assert _fvu(trained, x) < 0.8 * _fvu(untrained, x)


def test_train_sae_rejects_bad_layer(toy_model_dir, tmp_path):
    (tmp_path / "en.txt").write_text("hello world\n" * 20, encoding="utf-8")
    result = CliRunner().invoke(app, [
        "train-sae", str(toy_model_dir), str(tmp_path / "{lang}.txt"), "--lang", "en",
        "--layer", "model.layers.9.mlp", "--out-dir", str(tmp_path / "s"), "--device", "cpu",
    ])
    assert result.exit_code == 2
    assert "model.layers.9.mlp" in result.output
    assert not (tmp_path / "s").exists()
