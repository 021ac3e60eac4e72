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
    final = [ln for ln in result.output.splitlines() if ln.startswith("final training FVU")]
    assert len(final) == 1 and "layers.1.mlp " in final[0] and "layers.2.mlp " in final[0], result.output

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


def test_loss_log_records_each_batch_and_the_tail_mean(capsys):
    from types import SimpleNamespace

    from langfeat.train import LossLog

    class Fake(torch.nn.Module):
        def forward(self, x, y=None):
            return SimpleNamespace(fvu=torch.tensor(float(x)))

    saes = {"layers.0.mlp": Fake(), "layers.1.mlp": Fake()}
    log = LossLog(saes, n_batches=20)
    assert log.every == 2
    for step in range(20):
        saes["layers.0.mlp"](x=1.0 / (step + 1))
        saes["layers.1.mlp"](x=float(step))
    log.close()
    saes["layers.0.mlp"](x=5.0)  # hooks removed: not recorded
    assert len(log.history) == 20
    assert log.history[3] == {"layers.0.mlp": 0.25, "layers.1.mlp": 3.0}
    f32 = [float(torch.tensor(1 / n)) for n in (19, 20)]  # the fvu tensors are float32
    assert log.final() == {"layers.0.mlp": (f32[0] + f32[1]) / 2, "layers.1.mlp": 18.5}
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10  # every second batch
    assert lines[0] == "batch 2/20 training FVU: layers.0.mlp 0.500, layers.1.mlp 1.000"
