"""What the sparse probe's accuracy on held-out text of another source owes to its fit settings and to the amount
of training text, beside fastText on the same texts, on a finished demo store (run ``make demo`` first).

    .venv/bin/python benchmarks/probe_lid.py [--store demo-store] [--only N ...] [--flores DIR] [--flores-docs 40]
                                             [--ntrex DIR] [--ntrex-docs 300] [--ui DIR] [--udhr-docs 20|all]

Every variant is ``classify --classifier-type sae-probe`` (k = all, value count) scored on the demo's 300 UDHR
segments (``--udhr-docs all``: all 887) and, for the variants marked so, on FLORES-200 devtest sentences
(``--flores``: a folder of ``<code>.devtest.gz`` files; default ``$LANGFEAT_SHARED/data/flores200_devtest`` when it
exists), a second source
none of the settings were chosen on. The variants differ in the class weights (``--probe-class-weight``), C
(``--probe-c``), the training windows and epochs, and the training text: the demo's synthetic identification split,
that split plus the synthetic ``train`` split (the SAEs' training text, three times as much text in all), or that
split plus human-written news: the first ``--ntrex-docs`` sentences a language of NTREX-128 (``--ntrex``: the folder
of ``newstest2019-ref.<code>.txt`` files; default ``$LANGFEAT_SHARED/data/ntrex128`` when it exists), a third
source, neither UDHR nor FLORES; or that split plus human-translated software interface messages (``--ui``: the
folder ``benchmarks/ui_text.py`` writes, ``<lang>.txt`` from the Django, Wagtail and Sphinx catalogs), or several of
these together. This benchmark ingests the extra text as more identification runs. The store is
copied to a temporary folder first, so the demo store is left as it was; the SAEs are read where the demo trained
them (``<store>-saes``).

Prints one row per variant: training examples, non-zero weights, accuracy and fastText's accuracy on the same
texts per source, and the seconds of the UDHR classify call (the ingestion of extra text is timed on its own
line).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from langfeat import corpus
from langfeat.experiments.classify import classify
from langfeat.options import ClassifyOptions, DemoConfig, IngestConfig
from langfeat.store import open_store

FASTTEXT = "demo-fasttext"
TRAIN = corpus.PREFIX + "synthetic/train"
FLORES_CODES = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "it": "ita_Latn", "pt": "por_Latn",
                "hi": "hin_Deva", "es": "spa_Latn", "th": "tha_Thai", "bg": "bul_Cyrl", "ru": "rus_Cyrl",
                "tr": "tur_Latn", "vi": "vie_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang", "zh": "zho_Hans"}
NTREX_CODES = {"en": "eng-US", "de": "deu", "fr": "fra", "it": "ita", "pt": "por", "hi": "hin", "es": "spa",
               "th": "tha", "bg": "bul", "ru": "rus", "tr": "tur", "vi": "vie", "ja": "jpn", "ko": "kor",
               "zh": "zho_Hans"}


@dataclass(frozen=True)
class Variant:
    label: str
    extra: str  # training text beside the identification split: "" | "train" (synthetic) | "ntrex" (news) | "ui",
    # or several joined by "+"
    window: int
    stride: int
    c: float
    class_weight: str
    epochs: int
    flores: bool = False  # also scored on FLORES (with --flores)


VARIANTS = (
    Variant("the demo before class weights (C = 1)", "", 32, 16, 1.0, "none", 50, flores=True),
    Variant("balanced, C = 1", "", 32, 16, 1.0, "balanced", 50),
    Variant("unweighted, C = 0.1", "", 32, 16, 0.1, "none", 50),
    Variant("the demo: balanced, C = 0.1", "", 32, 16, 0.1, "balanced", 50, flores=True),
    Variant("+ train split, unweighted, C = 0.1, windows 24/12", "train", 24, 12, 0.1, "none", 30),
    Variant("+ train split, balanced, C = 0.1, windows 24/12", "train", 24, 12, 0.1, "balanced", 30, flores=True),
    Variant("+ NTREX news, balanced, C = 0.3", "ntrex", 32, 16, 0.3, "balanced", 50, flores=True),
    Variant("+ NTREX news, balanced, C = 1", "ntrex", 32, 16, 1.0, "balanced", 50, flores=True),
    Variant("+ UI messages, balanced, C = 0.1", "ui", 32, 16, 0.1, "balanced", 50, flores=True),
    Variant("+ UI messages, balanced, C = 0.3", "ui", 32, 16, 0.3, "balanced", 50, flores=True),
    Variant("+ UI messages, balanced, C = 1", "ui", 32, 16, 1.0, "balanced", 50, flores=True),
    Variant("+ train split + UI messages, balanced, C = 0.3", "train+ui", 32, 16, 0.3, "balanced", 50, flores=True),
    Variant("+ train split, balanced, C = 0.1, windows 16/8", "train", 16, 8, 0.1, "balanced", 30, flores=True),
)


def ingest_extra(store: str, config: DemoConfig, dataset: str, codes: list[str], end: int | None = None
                 ) -> float | None:
    """Ingest more training text (SAE features only) as identification runs; the seconds taken, or None where the
    store already holds it (the demo ingests the synthetic train split itself)."""
    from langfeat.ingest import ingest

    with open_store(store) as st:
        done = set(st.sql("SELECT config FROM runs WHERE dataset = ? AND status = 'complete'", [dataset])["config"])
    if set(codes) <= done:
        return None
    start = time.perf_counter()
    ingest(IngestConfig(model=config.model, dataset=dataset, langs=codes, layers=[config.sae_pattern],
                        local_sae_dir=config.sae_dir, batch=config.batch, max_length=config.max_length, store=store,
                        end=end, dtype=config.dtype), progress=True)
    return time.perf_counter() - start


def store_dtype(store: str) -> str:
    """The model precision the demo store's identification runs were ingested in (the benchmark's runs match it)."""
    with open_store(store) as st:
        found = st.sql("SELECT DISTINCT dtype FROM runs WHERE dataset = ?", [corpus.PLAN["identify"]])["dtype"]
    return found[0] if len(found) else "float32"


def store_layers(store: str) -> tuple[int, ...]:
    """The SAE layers of the demo store's identification runs (extra text is ingested at the same layers)."""
    with open_store(store) as st:
        found = st.sql("SELECT DISTINCT unnest(sae_layers) AS layer FROM runs WHERE dataset = ? ORDER BY layer",
                       [corpus.PLAN["identify"]])["layer"]
    return tuple(found.to_list())


def accuracy(store: str, name: str) -> float:
    with open_store(store) as st:
        return st.sql("SELECT accuracy FROM classify_metrics WHERE name = ?", [name]).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="demo-store", help="a store `make demo` finished (default: demo-store)")
    parser.add_argument("--only", type=int, nargs="*", help="run only these variants (0-based positions)")
    shared = Path(os.environ.get("LANGFEAT_SHARED", "-")) / "data" / "flores200_devtest"
    parser.add_argument("--flores", type=Path, default=shared if shared.is_dir() else None,
                        help="folder of FLORES-200 <code>.devtest.gz files (default: $LANGFEAT_SHARED's, if any)")
    parser.add_argument("--flores-docs", type=int, default=40, help="FLORES sentences per language (default 40)")
    news = Path(os.environ.get("LANGFEAT_SHARED", "-")) / "data" / "ntrex128"
    parser.add_argument("--ntrex", type=Path, default=news if news.is_dir() else None,
                        help="folder of NTREX-128 newstest2019-ref.<code>.txt files (default: $LANGFEAT_SHARED's)")
    parser.add_argument("--ntrex-docs", type=int, default=300, help="NTREX sentences per language (default 300)")
    parser.add_argument("--udhr-docs", default=None,
                        help="UDHR segments per language to score: a number or 'all' (default: the demo's 20)")
    parser.add_argument("--ui", type=Path, default=None,
                        help="folder of <lang>.txt interface messages (benchmarks/ui_text.py writes it)")
    args = parser.parse_args()
    config = DemoConfig(store=str(Path(args.store).resolve()))
    if not (Path(config.store) / "results" / "classify_docs" / f"name={FASTTEXT}").exists():
        raise SystemExit(f"{args.store} holds no finished demo (no {FASTTEXT} result): run `make demo` first")
    config = replace(config, dtype=store_dtype(config.store), layers=store_layers(config.store))
    udhr_docs = config.eval_docs if args.udhr_docs is None else None if args.udhr_docs == "all" else int(args.udhr_docs)
    langs = list(config.langs)
    chosen = [(i, v) for i, v in enumerate(VARIANTS) if args.only is None or i in args.only]
    if args.ntrex is None and any("ntrex" in v.extra.split("+") for _, v in chosen):
        chosen = [(i, v) for i, v in chosen if "ntrex" not in v.extra.split("+")]
        print("no NTREX-128 folder (--ntrex or $LANGFEAT_SHARED): the + NTREX variants are skipped")
    if args.ui is None and any("ui" in v.extra.split("+") for _, v in chosen):
        chosen = [(i, v) for i, v in chosen if "ui" not in v.extra.split("+")]
        print("no interface-message folder (--ui, from benchmarks/ui_text.py): the + UI variants are skipped")
    extras = {"train": (TRAIN, langs, None)}  # extra text -> (dataset, configs, end)
    if args.ntrex is not None:
        extras["ntrex"] = (f"{args.ntrex}/newstest2019-ref.{{lang}}.txt", [NTREX_CODES[lang] for lang in langs],
                           args.ntrex_docs)
    if args.ui is not None:
        extras["ui"] = (f"{args.ui.resolve()}/{{lang}}.txt", langs, None)
    sources = {"udhr": (corpus.PLAN["eval"], langs, udhr_docs)}
    if args.flores is not None:
        sources["flores"] = (f"{args.flores}/{{lang}}.devtest.gz", [FLORES_CODES[lang] for lang in langs],
                             args.flores_docs)
    with tempfile.TemporaryDirectory(prefix="probe-lid-") as tmp:
        store = os.path.join(tmp, "store")
        shutil.copytree(config.store, store)
        fasttext = {"udhr": accuracy(store, FASTTEXT)}
        if udhr_docs != config.eval_docs:
            classify(ClassifyOptions(dataset=corpus.PLAN["eval"], langs=langs, classifier="fasttext", end=udhr_docs,
                                     store=store, name="bench-fasttext-udhr"))
            fasttext["udhr"] = accuracy(store, "bench-fasttext-udhr")
        if "flores" in sources:
            dataset, codes, end = sources["flores"]
            classify(ClassifyOptions(dataset=dataset, langs=codes, classifier="fasttext", end=end, store=store,
                                     name="bench-fasttext-flores"))
            fasttext["flores"] = accuracy(store, "bench-fasttext-flores")
        for extra in sorted({part for _, v in chosen for part in v.extra.split("+")} - {""}):
            dataset, codes, end = extras[extra]
            seconds = ingest_extra(store, config, dataset, codes, end)
            print(f"ingest of the {extra} text (SAE features): "
                  + ("in the demo store already" if seconds is None else f"{seconds:.0f} s"))
        print(f"{'variant':52} {'examples':>8} {'weights':>7} {'UDHR':>6} {'fastText':>8} {'FLORES':>6} "
              f"{'fastText':>8} {'seconds':>7}")
        for i, v in chosen:
            configs = [f"{corpus.PLAN['identify']}:{lang}" for lang in langs]
            for part in filter(None, v.extra.split("+")):
                dataset, codes, _ = extras[part]
                configs += [f"{dataset}:{code}" for code in codes]
            got: dict[str, float] = {}
            seconds = 0.0
            for source, (dataset, codes, end) in sources.items():
                if source == "flores" and not v.flores:
                    continue
                name = f"bench-probe-{i}-{source}"
                start = time.perf_counter()
                classify(ClassifyOptions(
                    dataset=dataset, langs=codes, classifier="sae-probe", model=config.model,
                    local_sae_dir=config.sae_dir, end=end, batch=config.batch, max_length=config.max_length,
                    store=store, name=name, train_configs=configs, dtype=config.dtype,
                    probe_window=v.window, probe_stride=v.stride, probe_c=v.c, probe_class_weight=v.class_weight,
                    probe_max_iter=v.epochs))
                if source == "udhr":
                    seconds = time.perf_counter() - start
                    with open_store(store) as st:
                        weights = st.sql("SELECT count(*) FROM classify_units WHERE name = ?", [name]).item()
                    result = Path(store) / "results" / "classify_docs" / f"name={name}"
                    examples = json.loads((result / "params.json").read_text())["n_train_examples"]
                got[source] = accuracy(store, name)
            flores = f"{got['flores']:6.3f} {fasttext['flores']:8.3f}" if "flores" in got else f"{'':6} {'':8}"
            print(f"{v.label:52} {examples:8d} {weights:7d} {got['udhr']:6.3f} {fasttext['udhr']:8.3f} {flores} "
                  f"{seconds:7.0f}", flush=True)


if __name__ == "__main__":
    main()
