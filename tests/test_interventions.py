"""Interventions against hand-written hook implementations of the formulas (toy model and SAEs)."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from hand import capture
from safetensors.torch import load_file

from langfeat import interventions as iv
from langfeat.errors import UsageError
from langfeat.experiments import ppl
from langfeat.layers import parse
from langfeat.models import load_model

TEXT = "The quick brown fox jumps over the lazy dog."
LAYERS = [1, 2]


@pytest.fixture(scope="module")
def loaded(toy_model_dir):
    return load_model(str(toy_model_dir), device="cpu")


@pytest.fixture(scope="module")
def sae_weights(toy_sae_dir):
    """Raw SAE tensors per layer, read straight from the safetensors files (not through sparsify)."""
    return {n: load_file(str(toy_sae_dir / f"layers.{n}.mlp" / "sae.safetensors")) for n in range(4)}


def hand_encode(w, x, k=8):
    """TopK SAE encoding written out: ReLU(W_enc (x − b_dec) + b_enc), keep the k largest."""
    pre = torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    acts, idx = pre.topk(k, dim=-1)
    return acts, idx


def hand_decode(w, acts, idx):
    return (acts[..., None] * w["W_dec"][idx]).sum(-2) + w["b_dec"]


def hand_ppl(model, tokenizer, text, hooks):
    """exp(mean NLL of tokens 1..T−1) with ``hooks`` {module: fn(output) -> output} registered by hand."""
    handles = [m.register_forward_hook(lambda mod, inp, out, f=f: f(out)) for m, f in hooks.items()]
    try:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
    finally:
        for h in handles:
            h.remove()
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)
    nll = -logp.gather(1, ids[0, 1:, None]).squeeze(1)
    return math.exp(float(nll.mean()))


def mlp_outputs(model, tokenizer, text, layer):
    """The MLP output of ``layer`` for ``text`` (one row per position)."""
    return capture(model, tokenizer(text)["input_ids"], [layer])[layer]


@pytest.fixture(scope="module")
def firing(loaded, sae_weights):
    """Per layer in LAYERS, the 3 latents that fire most often on TEXT (so ablating them matters)."""
    model, tok = loaded
    out = {}
    for n in LAYERS:
        _, idx = hand_encode(sae_weights[n], mlp_outputs(model, tok, TEXT, n))
        out[n] = torch.bincount(idx.flatten(), minlength=128).topk(3).indices.tolist()
    return out


def feature_frame(firing, lang="de"):
    rows = []
    for n, feats in firing.items():
        for j, f in enumerate(feats):
            rows.append({"lang": lang, "layer": n, "feature": f, "act_max": 1.5 + j, "act_min": 0.1 * (j + 1),
                         "act_avg": 0.5 + 0.25 * j})
    rows.append({"lang": "fr", "layer": 1, "feature": 0, "act_max": 9.0, "act_min": 1.0, "act_avg": 2.0})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def setup(loaded, firing, toy_sae_dir):
    model, _ = loaded
    feats = feature_frame(firing)
    specs = iv.layer_specs(model, None, feats)
    saes = iv.load_saes(model, specs, feats, None, str(toy_sae_dir))
    return feats, specs, saes


def test_layer_specs_default_to_the_set_layers(setup):
    _, specs, saes = setup
    assert [s.mlp_path for s in specs] == ["model.layers.1.mlp", "model.layers.2.mlp"]
    assert sorted(saes) == LAYERS


@pytest.mark.parametrize("value_type,col", [("max", "act_max"), ("avg", "act_avg"), ("min", "act_min")])
def test_sae_features_steering_matches_hand_hooks(loaded, setup, sae_weights, value_type, col):
    model, tok = loaded
    feats, specs, saes = setup
    alpha = -0.7
    plan = iv.build("sae-features", feats, "German", specs, saes, multiplier=alpha, value_type=value_type)
    assert plan.n_units == 6
    hooks = {}
    for n in LAYERS:
        part = feats.filter((pl.col("lang") == "de") & (pl.col("layer") == n))
        vec = torch.zeros(32)
        for f, v in zip(part["feature"], part[col], strict=True):
            vec += alpha * v * sae_weights[n]["W_dec"][f]
        hooks[model.model.layers[n].mlp] = lambda out, vec=vec: out + vec
    expected = hand_ppl(model, tok, TEXT, hooks)
    got = ppl.perplexities(model, tok, [TEXT], plan)["ppl"][0]
    assert got == pytest.approx(expected, rel=1e-5)
    assert got != pytest.approx(hand_ppl(model, tok, TEXT, {}), rel=1e-3)


def test_sae_ablate_matches_hand_encode_decode(loaded, setup, sae_weights, firing):
    model, tok = loaded
    feats, specs, saes = setup
    plan = iv.build("sae-ablate", feats, "de", specs, saes)  # default α = −1: set to 0
    hooks = {}
    for n in LAYERS:
        w, ids = sae_weights[n], torch.tensor(firing[n])

        def edit(out, w=w, ids=ids):
            acts, idx = hand_encode(w, out)
            x_hat = hand_decode(w, acts, idx)
            x_new = hand_decode(w, torch.where(torch.isin(idx, ids), 0.0, acts), idx)
            return x_new + (out - x_hat)

        hooks[model.model.layers[n].mlp] = edit
    expected = hand_ppl(model, tok, TEXT, hooks)
    base = hand_ppl(model, tok, TEXT, {})
    got = ppl.perplexities(model, tok, [TEXT], plan)["ppl"][0]
    assert got == pytest.approx(expected, rel=1e-5)
    assert abs(got - base) / base > 1e-3  # the ablated latents fire, so PPL moves


def test_sae_ablate_changes_only_the_chosen_features(loaded, sae_weights, firing):
    """x̂ + (x − x̂) = x, and the edit removes exactly Σ a_f W_dec[f] over the set's firing latents."""
    model, tok = loaded
    n, w = 1, sae_weights[1]
    x = mlp_outputs(model, tok, TEXT, n)
    acts, idx = hand_encode(w, x)
    x_hat = hand_decode(w, acts, idx)
    assert torch.allclose(x_hat + (x - x_hat), x, atol=1e-6)
    plan = iv.SaeAblation(intervention_type="sae-ablate", saes={"m": (_sae(n, model, w), torch.tensor(firing[n]))})
    out = plan.hooks()["m"](None, (), x[None])[0]
    hit = torch.isin(idx, torch.tensor(firing[n]))
    removed = (torch.where(hit, acts, 0.0)[..., None] * w["W_dec"][idx]).sum(-2)
    assert torch.allclose(out, x - removed, atol=1e-5)
    untouched = ~hit.any(-1)
    assert untouched.any() and torch.allclose(out[untouched], x[untouched], atol=1e-5)


def _sae(n, model, w):
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(32, SparseCoderConfig(num_latents=128, k=8))
    sae.load_state_dict(w)
    return sae.eval()


def test_sae_ablate_empty_set_or_zero_alpha_is_a_no_op(loaded, setup):
    model, tok = loaded
    feats, specs, saes = setup
    base = ppl.perplexities(model, tok, [TEXT, "Der Hund"])["ppl"].to_list()
    zero = iv.build("sae-ablate", feats, "de", specs, saes, multiplier=0.0)
    empty = iv.build("sae-ablate", feats.filter(pl.col("layer") == 0), "de", specs, saes)
    steer0 = iv.build("sae-features", feats, "de", specs, saes, multiplier=0.0)
    for plan in (zero, empty, steer0):
        assert ppl.perplexities(model, tok, [TEXT, "Der Hund"], plan)["ppl"].to_list() == base


@pytest.mark.parametrize("method", ["fixed", "scaling"])
def test_neuron_edit_matches_hand_hooks(loaded, method):
    model, tok = loaded
    feats = pl.DataFrame({"lang": ["ru"] * 3, "layer": [0, 0, 3], "feature": [5, 17, 63],
                          "act_max": [2.0, 0.5, 1.25]})
    specs = iv.layer_specs(model, None, feats)
    plan = iv.build("neuron", feats, "rus_Cyrl", specs, neuron_method=method, value=0.3, multiplier=-0.4,
                    n_neurons=64)
    assert list(plan.hooks()) == ["model.layers.0.mlp.act_fn", "model.layers.3.mlp.act_fn"]

    def edit(idx, gmax):
        def f(out):
            out = out.clone()
            for i, g in zip(idx, gmax, strict=True):
                out[..., i] = 0.3 if method == "fixed" else out[..., i] + (-0.4) * g
            return out

        return f

    hooks = {model.model.layers[0].mlp.act_fn: edit([5, 17], [2.0, 0.5]),
             model.model.layers[3].mlp.act_fn: edit([63], [1.25])}
    assert ppl.perplexities(model, tok, [TEXT], plan)["ppl"][0] == pytest.approx(
        hand_ppl(model, tok, TEXT, hooks), rel=1e-5)


def test_last_token_steering_touches_only_the_last_position():
    vec = torch.tensor([1.0, 2.0])
    out = torch.zeros(2, 3, 2)
    last = iv.Steering(vectors={"m": vec}, last_token_only=True).hooks()["m"](None, (), out)
    every = iv.Steering(vectors={"m": vec}).hooks()["m"](None, (), out)
    assert torch.equal(last[:, :2], out[:, :2]) and torch.equal(last[:, 2], vec.expand(2, 2))
    assert torch.equal(every, vec.expand(2, 3, 2))
    assert torch.equal(out, torch.zeros(2, 3, 2))  # the module output is not modified in place


def test_bad_input_is_a_usage_error(loaded, setup):
    model, _ = loaded
    feats, specs, saes = setup
    with pytest.raises(UsageError, match="--multiplier"):
        iv.build("sae-features", feats, "de", specs, saes)
    with pytest.raises(UsageError, match="intervention-type"):
        iv.build("steer", feats, "de", specs, saes, multiplier=1.0)
    with pytest.raises(UsageError, match="out of range"):
        bad = feats.with_columns(pl.lit(500, dtype=pl.Int64).alias("feature"))
        iv.build("sae-features", bad, "de", specs, saes, multiplier=1.0)
    with pytest.raises(UsageError, match="fix --layer"):
        iv.layer_specs(model, ["model.layers.{0..9}.mlp"], feats)
    assert parse("model.layers.1.mlp")[0].layer == 1
    with pytest.raises(UsageError, match="set of sae units"):
        iv.check_kind(feats.with_columns(pl.lit("neuron").alias("kind")), "sae-ablate")
    iv.check_kind(feats.with_columns(pl.lit("neuron").alias("kind")), "neuron")
