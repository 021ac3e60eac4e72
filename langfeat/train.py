"""Train sparsify TopK SAEs on a model's MLP outputs (the paper's train_sae.py, on any text source).

Used when no published SAE exists for a model (e.g. the offline default SmolLM2): the result is a folder of
``<hookpoint>/{cfg.json, sae.safetensors}`` that ``langfeat ingest --local-sae-dir`` reads.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from langfeat import layers as layer_patterns
from langfeat.errors import UsageError


@dataclass
class TrainSaeConfig:
    """What to train: SAEs at ``layers`` (module paths/patterns) of ``model`` on ``texts``."""

    layers: list[str]
    out_dir: str
    num_latents: int = 4096
    k: int = 32
    lr: float = 1e-3
    batch_size: int = 8
    ctx_len: int = 128
    seed: int = 0


@contextlib.contextmanager
def _truncated(model, last_layer: int):
    """Run only the decoder layers up to ``last_layer`` and skip the LM head while training (the FVU loss needs
    neither); the model is restored afterwards."""
    import torch

    from langfeat.models import base_prefix

    base = getattr(model, base_prefix(model), None)
    layers = getattr(base, "layers", None)
    head = getattr(model, "lm_head", None)
    if not isinstance(layers, torch.nn.ModuleList) or head is None:
        yield
        return
    model.lm_head = torch.nn.Identity()
    base.layers = torch.nn.ModuleList(list(layers)[: last_layer + 1])
    try:
        yield
    finally:
        base.layers = layers
        model.lm_head = head


@dataclass
class TrainedSaes:
    """What :func:`train_saes` wrote: ``{hookpoint: folder}``, the tokens one pass saw, the final training FVU."""

    paths: dict[str, Path]
    tokens: int
    fvu: dict[str, float]


class LossLog:
    """The training FVU of each SAE, batch by batch, read from the SAEs' forward outputs (sparsify reports its
    loss only to wandb); a line on stderr every ``every`` batches, above sparsify's progress bar."""

    def __init__(self, saes: dict, n_batches: int, echo: bool = True):
        self.names = list(saes)
        self.n_batches = n_batches
        self.every = max(1, n_batches // 10)
        self.echo = echo
        self.history: list[dict[str, float]] = []
        self._pending: dict[str, float] = {}
        self._handles = [sae.register_forward_hook(self._hook(name), with_kwargs=True) for name, sae in saes.items()]

    def _hook(self, name: str):
        def hook(_module, _args, _kwargs, out) -> None:
            self._pending[name] = self._pending.get(name, 0.0) + float(out.fvu.detach())
            if len(self._pending) == len(self.names):
                self.history.append({n: self._pending[n] for n in self.names})
                self._pending = {}
                step = len(self.history)
                if self.echo and (step % self.every == 0 or step == self.n_batches):
                    self.write(f"batch {step}/{self.n_batches} training FVU: {self.line(self.history[-1])}")
        return hook

    @staticmethod
    def line(values: dict[str, float]) -> str:
        return ", ".join(f"{name} {v:.3f}" for name, v in values.items())

    @staticmethod
    def write(message: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr)

    def final(self) -> dict[str, float]:
        """The mean FVU per SAE over the last tenth of the batches."""
        tail = self.history[-self.every:]
        return {n: sum(h[n] for h in tail) / len(tail) for n in self.names} if tail else {}

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def train_saes(config: TrainSaeConfig, model, tokenizer, texts: list[str]) -> TrainedSaes:
    """Train one SAE per hooked layer on the MLP outputs of ``texts``; return where they are and what they saw.

    The texts are joined and cut into ``ctx_len``-token chunks (sparsify's ``chunk_and_tokenize``); training is
    one pass without shuffling. The saved weights are sparsify's evaluation weights.
    """
    from datasets import Dataset

    from langfeat.models import base_prefix, get_module, import_sparsify

    import_sparsify()
    from sparsify import SparseCoderConfig, TrainConfig, Trainer
    from sparsify.data import chunk_and_tokenize

    specs = layer_patterns.parse_option(config.layers, neurons=False)
    if not specs:
        raise UsageError("no layers to train: pass --layer 'model.layers.{0..3}.mlp'")
    for spec in specs:
        get_module(model, spec.mlp_path)
    hookpoints = [spec.hookpoint(base_prefix(model)) for spec in specs]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UsageError("no training text: the dataset is empty")
    data = chunk_and_tokenize(
        Dataset.from_dict({"text": texts}), tokenizer, max_seq_len=config.ctx_len, return_final_batch=False,
        num_proc=None,  # datasets forks a pool for any number; forking after torch/tokenizers threads can crash
        load_from_cache_file=False,
    )
    if len(data) < config.batch_size:
        raise UsageError(
            f"only {len(data)} chunks of {config.ctx_len} tokens for batch size {config.batch_size}: "
            "add text or lower --batch-size/--ctx-len"
        )
    out = Path(config.out_dir)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        cfg = TrainConfig(
            SparseCoderConfig(num_latents=config.num_latents, k=config.k),
            batch_size=config.batch_size,
            lr=config.lr,
            lr_warmup_steps=max(1, len(data) // config.batch_size // 10),
            hookpoints=hookpoints,
            init_seeds=[config.seed],
            log_to_wandb=False,
            save_every=10**9,
            save_dir=tmp,
            run_name="run",
        )
        with contextlib.redirect_stdout(sys.stderr), _truncated(model, max(s.layer for s in specs)):
            trainer = Trainer(cfg, data, model)
            log = LossLog(trainer.saes, -(-len(data) // config.batch_size))  # the last batch may be short
            try:
                trainer.fit()  # sparsify prints progress to stdout
            finally:
                log.close()
        if log.history:
            log.write(f"final training FVU (mean of the last {min(log.every, len(log.history))} batches): "
                      f"{log.line(log.final())}")
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for hookpoint in hookpoints:
            src = Path(tmp) / "run" / hookpoint
            if not (src / "cfg.json").exists():
                raise UsageError(f"sparsify saved no SAE for {hookpoint}: check --layer")
            dst = out / hookpoint
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
            paths[hookpoint] = dst
    return TrainedSaes(paths, len(data) * config.ctx_len, log.final())
