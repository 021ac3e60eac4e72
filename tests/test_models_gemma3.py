"""Gemma3 hook paths on a tiny Gemma3ForCausalLM built in code, against hand-computed MLP activations.

Gemma3's MLP is ``down_proj(gelu_tanh(gate_proj(x)) * up_proj(x))``; its output is followed by a post-feedforward
RMSNorm inside the decoder layer. ``model.layers.N.mlp`` must therefore give the MLP output (what SAEs read) and
``model.layers.N.mlp.act_fn`` the GELU of the gate projection (LAPE's neurons).
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import polars as pl
import pytest
import torch

from langfeat.ingest import IngestConfig, encode_texts, ingest
from langfeat.layers import parse
from langfeat.models import base_prefix, get_module, load_model, load_sae
from langfeat.toy import DEFAULT_TEXTS, build_saes, build_tokenizer

LAYERS = [0, 1, 2, 3]
D_MODEL, D_MLP = 32, 64
TEXTS = [*DEFAULT_TEXTS, "A longer English sentence, so that the sliding window of four tokens really slides along it."]


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    """A saved random Gemma3ForCausalLM (4 layers, sliding window 4, tied embeddings) with a BOS-adding tokenizer."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    out = tmp_path_factory.mktemp("gemma3")
    tok = build_tokenizer(out, list(DEFAULT_TEXTS) * 3, vocab_size=400)
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=D_MODEL, intermediate_size=D_MLP, num_hidden_layers=len(LAYERS),
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "embed" not in name:
                param.normal_(0.0, 0.2)
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def gemma(gemma_dir, tmp_path_factory):
    model, tokenizer = load_model(str(gemma_dir), device="cpu")
    sae_dir = tmp_path_factory.mktemp("gemma3_saes")
    build_saes(sae_dir, LAYERS, d_in=D_MODEL, num_latents=96, k=6)
    saes = {n: load_sae(f"layers.{n}.mlp", local_sae_dir=sae_dir) for n in LAYERS}
    return model, tokenizer, saes, sae_dir


def _keep(inputs: dict, outputs: dict, k: int, x: torch.Tensor, out: torch.Tensor) -> None:
    inputs[k], outputs[k] = x, out


def hand(model, tokenizer, saes, texts):
    """One document at a time: hook each MLP's input, recompute its activations and output by hand."""
    sae_rows, neuron_rows = [], []
    for d, text in enumerate(texts):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        assert ids[0, 0].item() == tokenizer.bos_token_id
        inputs: dict[int, torch.Tensor] = {}
        outputs: dict[int, torch.Tensor] = {}
        hooks = [
            model.model.layers[n].mlp.register_forward_hook(
                lambda m, a, o, k=n, i=inputs, r=outputs: _keep(i, r, k, a[0][0], o[0])
            )
            for n in LAYERS
        ]
        with torch.no_grad():
            model(ids)
            for h in hooks:
                h.remove()
            for n in LAYERS:
                mlp, x = model.model.layers[n].mlp, inputs[n]
                gate = torch.nn.functional.gelu(x @ mlp.gate_proj.weight.T, approximate="tanh")
                out = (gate * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T
                torch.testing.assert_close(out, outputs[n], rtol=1e-4, atol=1e-5)  # the hook is the MLP output
                enc = saes[n].encode(out)
                acts = enc.top_acts.to(torch.float16)
                for p in range(acts.shape[0]):
                    for a, f in zip(acts[p].tolist(), enc.top_indices[p].tolist(), strict=True):
                        if a > 0:
                            sae_rows.append((d, p, n, f, a))
                for p, j in zip(*np.nonzero((gate > 0).numpy()), strict=True):
                    neuron_rows.append((d, int(p), n, int(j), float(gate[p, j])))
    schema = {"doc": pl.Int32, "pos": pl.Int32, "layer": pl.Int32, "feature": pl.Int32, "act": pl.Float32}
    return pl.DataFrame(sae_rows, schema=schema, orient="row"), pl.DataFrame(neuron_rows, schema=schema, orient="row")


@pytest.fixture(scope="module")
def expected(gemma):
    model, tokenizer, saes, _ = gemma
    return hand(model, tokenizer, saes, TEXTS)


def _same(got: pl.DataFrame, want: pl.DataFrame, rtol: float = 2e-3) -> None:
    keys = ["layer", "doc", "pos", "feature"]
    got, want = got.sort(keys), want.sort(keys)
    assert got.select(keys).equals(want.select(keys).cast(got.select(keys).schema))
    np.testing.assert_allclose(got["act"].to_numpy(), want["act"].to_numpy(), rtol=rtol, atol=1e-4)


def test_paths_and_hookpoints(gemma):
    model, _, _, _ = gemma
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert base_prefix(model) == "model"
    specs = parse("model.layers.{0..3}.mlp")
    assert [s.hookpoint(base_prefix(model)) for s in specs] == [f"layers.{n}.mlp" for n in LAYERS]
    for s in specs:
        assert get_module(model, s.path) is model.model.layers[s.layer].mlp
        assert get_module(model, s.act_fn_path) is model.model.layers[s.layer].mlp.act_fn
    assert model.model.layers[0].mlp.act_fn(torch.tensor([-1.0])).item() < 0  # GELU: negative values exist


@pytest.mark.parametrize("batch", [1, 4])
def test_sae_and_neuron_events_equal_hand(gemma, expected, batch):
    model, tokenizer, saes, _ = gemma
    events, _ = encode_texts(TEXTS, model, tokenizer, "model.layers.{0..3}.mlp", saes, batch=batch, neurons=True)
    _same(events.filter(pl.col("kind") == "sae").drop("kind"), expected[0])
    _same(events.filter(pl.col("kind") == "neuron").drop("kind"), expected[1], rtol=2e-3)
    assert len(expected[0]) > 500 and len(expected[1]) > 500


def test_ingest_counts_equal_hand(gemma, gemma_dir, expected, tmp_path):
    """The store's feature and neuron counts of a Gemma3 run equal counts of the hand events."""
    model, tokenizer, _, sae_dir = gemma
    (tmp_path / "en.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    cfg = IngestConfig(
        model=str(gemma_dir), dataset=str(tmp_path / "{lang}.txt"), langs=["en"], layers=["model.layers.{0..3}.mlp"],
        local_sae_dir=str(sae_dir), neurons=True, batch=3, store=str(tmp_path / "store"), device="cpu",
    )
    (manifest,) = ingest(cfg, model=model, tokenizer=tokenizer, progress=False)
    assert manifest["model"] == str(gemma_dir) and manifest["model_description"] is None
    root = (tmp_path / "store" / "data").as_posix()
    con = duckdb.connect()
    for table, unit, want in (("feature_counts", "feature", expected[0]), ("neuron_counts", "neuron", expected[1])):
        got = con.sql(
            f"SELECT layer, {unit} AS unit, tok_count, doc_count FROM read_parquet("
            f"'{root}/run_id=*/lang=*/{table}/*.parquet', hive_partitioning=true) WHERE run_id <> '_schema'"
        ).pl()
        ref = want.group_by("layer", "feature").agg(
            pl.len().alias("tok_count"), pl.col("doc").n_unique().alias("doc_count")
        ).rename({"feature": "unit"})
        cols = ["layer", "unit", "tok_count", "doc_count"]
        got = got.select(cols).cast(dict.fromkeys(cols, pl.Int64)).sort(cols[:2])
        assert got.equals(ref.select(cols).cast(dict.fromkeys(cols, pl.Int64)).sort(cols[:2])), table
    written = json.loads((tmp_path / "store" / "runs" / f"{manifest['run_id']}.json").read_text())
    assert written["model"] == str(gemma_dir) and written["model_description"] is None


def test_interventions_edit_the_gemma3_mlp_as_computed_by_hand(gemma):
    """Steering adds to the MLP output (before Gemma3's post-feedforward norm); a neuron edit on act_fn changes the
    gate that multiplies up_proj."""
    from langfeat.interventions import NeuronEdit, Steering

    model, tokenizer, _, _ = gemma
    ids = tokenizer(TEXTS[-1], return_tensors="pt")["input_ids"]
    mlp = model.model.layers[1].mlp
    seen: dict[str, torch.Tensor] = {}
    hook = mlp.register_forward_hook(lambda m, a, o, s=seen: s.update(x=a[0][0], out=o[0]))
    norm = model.model.layers[1].post_feedforward_layernorm
    norm_hook = norm.register_forward_hook(lambda m, a, o, s=seen: s.update(normed_in=a[0][0]))
    with torch.no_grad():
        base = model(ids).logits
        x, base_out = seen["x"], seen["out"]
        v = torch.linspace(-1, 1, D_MODEL)
        with Steering(vectors={"model.layers.1.mlp": v}).applied(model):
            steered = model(ids).logits
        torch.testing.assert_close(seen["x"], x)  # the input of layer 1's MLP is unchanged
        torch.testing.assert_close(seen["out"], base_out)  # the inner hook sees the MLP's own output
        torch.testing.assert_close(seen["normed_in"], base_out + v)  # the layer continues from output + v
        idx = torch.tensor([0, 5, 17])
        with NeuronEdit(edits={"model.layers.1.mlp.act_fn": (idx, torch.zeros(3))}).applied(model):
            edited_logits = model(ids).logits
            edited_out = mlp(x[None])[0]
    hook.remove()
    norm_hook.remove()
    gate = torch.nn.functional.gelu(x @ mlp.gate_proj.weight.T, approximate="tanh")
    gate[:, idx] = 0
    torch.testing.assert_close(edited_out, (gate * (x @ mlp.up_proj.weight.T)) @ mlp.down_proj.weight.T,
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(steered, base) and not torch.allclose(edited_logits, base)
