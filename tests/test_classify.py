"""Classifiers against independent counts over the stored events, neuron hooks and hand-computed metrics."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import fasttext
import numpy as np
import polars as pl
import pytest
from factories import table_rows, write_set
from hand import capture, vote
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat import lid, sae_identity
from langfeat.cli import app
from langfeat.errors import UsageError
from langfeat.experiments.classify import ClassifyOptions, classify, compare, confusion, metrics
from langfeat.ingest import IngestConfig, ingest
from langfeat.models import load_model
from langfeat.store import ensure_store, open_store
from langfeat.store.results import write_result
from langfeat.store.runs import all_manifests

LANGS = {"en": "eng_Latn", "th": "tha_Thai", "ja": "jpn_Jpan"}
N_DOCS = 5


@pytest.fixture(scope="module")
def env(tmp_path_factory, toy_model_dir, toy_sae_dir):
    root = tmp_path_factory.mktemp("classify")
    data = root / "data"
    data.mkdir()
    for tag, code in LANGS.items():
        (data / f"{tag}.txt").write_text("\n".join(flores_lines(code, N_DOCS)) + "\n", encoding="utf-8")
    store = root / "store"
    dataset = str(data / "{lang}.txt")
    model, tokenizer = load_model(str(toy_model_dir), device="cpu")
    config = IngestConfig(model=str(toy_model_dir), dataset=dataset, langs=list(LANGS),
                          layers=["model.layers.{0..3}.mlp"], local_sae_dir=str(toy_sae_dir), device="cpu",
                          store=str(store))
    ingest(config, model, tokenizer, progress=False)
    with open_store(store) as st:
        events = st.events().with_columns(pl.col("act").cast(pl.Float32))
        docs = st.docs()
    # per language, the two features that fire most often in its documents and were not picked yet; plus one
    # feature shared by en and th (so a feature can vote for two languages)
    picked: dict[str, list[tuple[int, int]]] = {}
    used: set[tuple[int, int]] = set()
    for tag in LANGS:
        counts = events.filter(pl.col("lang") == tag).group_by("layer", "feature").len().sort(
            "len", "layer", "feature", descending=[True, False, False])
        keys = [k for k in counts.select("layer", "feature").iter_rows() if k not in used][:2]
        picked[tag] = keys
        used.update(keys)
    shared = next(k for k in events.group_by("layer", "feature").len().sort("len").select("layer", "feature")
                  .iter_rows() if k not in used)
    picked["en"].append(shared)
    picked["th"].append(shared)
    stats = events.group_by("layer", "feature").agg(pl.col("act").min().alias("mn"), pl.col("act").max().alias("mx"))
    stat = {(r[0], r[1]): (r[2], r[3]) for r in stats.iter_rows()}
    rows = [(tag, layer, feat, *stat[(layer, feat)]) for tag, keys in picked.items() for layer, feat in keys]
    write_set(store, "S", rows)
    return {"root": root, "store": store, "dataset": dataset, "model_dir": toy_model_dir, "sae_dir": toy_sae_dir,
            "events": events, "docs": docs, "set": picked, "stat": stat, "model": model, "tokenizer": tokenizer}


def opts(env, **kw) -> ClassifyOptions:
    base = {"dataset": env["dataset"], "langs": list(LANGS), "feature_set": "S", "store": str(env["store"]),
            "device": "cpu"}
    base.update(kw)
    return ClassifyOptions(**base)


def hand_scores(env, classifier: str) -> dict[int, dict[str, float]]:
    """doc_id -> language -> score, from the events frame and the set in plain Python."""
    members = defaultdict(list)
    for tag, keys in env["set"].items():
        for key in keys:
            members[key].append(tag)
    out: dict[int, dict[str, float]] = {d: dict.fromkeys(LANGS, 0.0) for d in env["docs"]["doc_id"].to_list()}
    for doc_id, layer, feature, act in env["events"].select("doc_id", "layer", "feature", "act").iter_rows():
        for tag in members.get((layer, feature), []):
            if classifier == "sae-min-max":
                mn, mx = env["stat"][(layer, feature)]
                out[doc_id][tag] += (act - mn) / (mx - mn + 1e-6)
            else:
                out[doc_id][tag] += 1
    if classifier == "sae-norm":
        for scores in out.values():
            for tag in scores:
                scores[tag] /= len(env["set"][tag])
    return out


@pytest.mark.parametrize("classifier", ["sae-count", "sae-min-max", "sae-norm"])
def test_sae_scores_equal_an_independent_count(env, classifier):
    name = classify(opts(env, classifier=classifier, name=classifier))
    want = hand_scores(env, classifier)
    with open_store(env["store"]) as st:
        votes = st.sql("SELECT d.doc_id, v.lang, v.votes, v.score FROM classify_votes v "
                       "JOIN classify_docs d USING (name, doc) WHERE name = ?", [name])
        preds = st.sql("SELECT d.doc_id, p.label, p.pred FROM classify_predictions p "
                       "JOIN classify_docs d USING (name, doc) WHERE name = ?", [name])
    assert votes.height == len(want) * len(LANGS)
    for doc_id, lang, n_votes, score in votes.iter_rows():
        assert score == pytest.approx(want[doc_id][lang], rel=1e-5, abs=1e-6)
        if classifier == "sae-count":
            assert n_votes == want[doc_id][lang]
    got = dict(preds.select("doc_id", "pred").iter_rows())
    assert got == {d: vote(s) for d, s in want.items()}
    labels = dict(env["docs"].select("doc_id", "lang").iter_rows())
    assert dict(preds.select("doc_id", "label").iter_rows()) == labels


def test_sae_norm_divides_by_set_sizes(env):
    classify(opts(env, classifier="sae-count", name="count"))
    classify(opts(env, classifier="sae-norm", name="norm"))
    with open_store(env["store"]) as st:
        both = st.sql("SELECT a.doc, a.lang, a.score AS count, b.score AS norm FROM classify_votes a "
                      "JOIN classify_votes b USING (doc, lang) WHERE a.name = 'count' AND b.name = 'norm'")
        sizes = dict(st.sql("SELECT lang, n_units FROM classify_langs WHERE name = 'norm'").iter_rows())
    assert sizes == {"en": 3, "th": 3, "ja": 2}
    for _doc, lang, count, norm in both.iter_rows():
        assert norm == pytest.approx(count / sizes[lang])


def test_ties_predict_unknown(env):
    first = env["set"]["en"][0]
    write_set(env["store"], "tie", [("en", *first), ("de", *first)])
    name = classify(opts(env, feature_set="tie", name="tie"))
    with open_store(env["store"]) as st:
        preds = st.sql("SELECT pred, n_best, score FROM classify_predictions WHERE name = ?", [name])
        row = st.sql("SELECT * FROM classify_metrics WHERE name = ?", [name]).row(0, named=True)
    assert preds["pred"].to_list() == ["unknown"] * len(LANGS) * N_DOCS
    assert preds.filter(pl.col("score") > 0)["n_best"].to_list() == [2] * preds.filter(pl.col("score") > 0).height
    assert preds.filter(pl.col("score") > 0).height > 0  # the feature does fire: a real tie, not only all-zero
    assert row["accuracy"] == 0 and row["n_unknown"] == len(LANGS) * N_DOCS


def test_metrics_equal_a_hand_computation(env):
    """A result whose scores are given: predictions en, de, de, unknown (tie), fr, en, xx for the labels below."""
    labels = ["en", "en", "de", "de", "fr", "fr", "fr"]
    score_rows = [
        {"en": 3, "de": 1, "fr": 0, "it": 0}, {"en": 1, "de": 2, "fr": 0, "it": 0},
        {"en": 0, "de": 5, "fr": 1, "it": 0}, {"en": 2, "de": 2, "fr": 1, "it": 0},
        {"en": 0, "de": 0, "fr": 0.5, "it": 0}, {"en": 0.7, "de": 0, "fr": 0.6, "it": 0},
        {"en": 0, "de": 0, "fr": 0, "it": 9},
    ]
    docs = pl.DataFrame({"classifier": "fasttext", "doc": list(range(7)), "label": labels, "config": labels,
                         "row": list(range(7)), "text": [f"t{i}" for i in range(7)]})
    scores = pl.DataFrame([{"doc": i, "lang": k, "score": float(v)} for i, r in enumerate(score_rows)
                           for k, v in r.items()])
    layout = ensure_store(env["store"])
    write_result(layout, "classify_langs", "hand", pl.DataFrame({"lang": ["en", "de", "fr", "it"], "n_units": 0}))
    write_result(layout, "classify_units", "hand", pl.DataFrame(schema={"kind": pl.String, "lang": pl.String,
                                                                        "layer": pl.Int32, "feature": pl.Int32}))
    write_result(layout, "classify_scores", "hand", scores)
    write_result(layout, "classify_docs", "hand", docs)
    preds = [vote(r) for r in score_rows]
    assert preds == ["en", "de", "de", "unknown", "fr", "en", "it"]
    classes = sorted(set(labels) | {p for p in preds if p != "unknown"})
    per = {}
    for c in classes:
        tp = sum(1 for y, p in zip(labels, preds, strict=True) if y == p == c)
        predicted, support = preds.count(c), labels.count(c)
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        per[c] = (support, prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    true_classes = sorted(set(labels))
    with open_store(env["store"]) as st:
        got = metrics(st, ["hand"]).row(0, named=True)
        cls = st.sql('SELECT class, support, "precision", recall, f1 FROM classify_class_metrics WHERE name = ?',
                     ["hand"])
        conf = confusion(st, "hand")
    assert got["n_docs"] == 7 and got["n_unknown"] == 1 and got["n_classes"] == 3
    assert got["accuracy"] == pytest.approx(3 / 7)
    assert got["precision_macro"] == pytest.approx(np.mean([per[c][1] for c in true_classes]))
    assert got["recall_macro"] == pytest.approx(np.mean([per[c][2] for c in true_classes]))
    assert got["f1_macro"] == pytest.approx(np.mean([per[c][3] for c in true_classes]))
    assert sorted(cls["class"].to_list()) == classes  # 'it' was predicted once: a class with support 0
    for c, support, prec, rec, f1 in cls.iter_rows():
        assert (support, prec, rec, f1) == pytest.approx(per[c])
    want = Counter(zip(labels, preds, strict=True))
    for row in conf.iter_rows(named=True):
        for col, n in row.items():
            if col != "label":
                assert n == want.get((row["label"], col), 0)
    assert conf["label"].to_list() == ["en", "fr", "de"]  # English, French, German


def test_neuron_count_equals_hand_hooks(env):
    rows = [("en", 0, n) for n in range(0, 5)] + [("th", 2, n) for n in range(10, 13)] + \
           [("ja", 3, n) for n in range(20, 30)] + [("ja", 0, 2)]
    write_set(env["store"], "neurons", rows, kind="neuron")
    name = classify(opts(env, classifier="neuron-count", feature_set="neurons", model=str(env["model_dir"]),
                         batch=3, name="neuron"))
    model, tokenizer = env["model"], env["tokenizer"]
    texts = [line for tag, code in LANGS.items() for line in flores_lines(code, N_DOCS)]
    want = []
    for text in texts:
        acts = capture(model, tokenizer(text)["input_ids"], (0, 2, 3), part="act_fn")
        votes = dict.fromkeys(LANGS, 0)
        for tag, layer, neuron in rows:
            votes[tag] += int((acts[layer][:, neuron] > 0).sum())
        want.append(votes)
    with open_store(env["store"]) as st:
        got = st.sql("SELECT doc, lang, votes, score FROM classify_votes WHERE name = ?", [name])
        preds = st.sql("SELECT doc, pred FROM classify_predictions WHERE name = ? ORDER BY doc", [name])
    assert got.height == len(texts) * len(LANGS)
    for doc, lang, votes, score in got.iter_rows():
        assert votes == want[doc][lang] and score == want[doc][lang]
    assert preds["pred"].to_list() == [vote(v) for v in want]


def test_fasttext_classifier(env):
    name = classify(opts(env, classifier="fasttext", feature_set=None, name="ft"))
    texts = [line for code in LANGS.values() for line in flores_lines(code, N_DOCS)]
    # the fastText model's own full distribution, read label by label (no langfeat code in between)
    model = fasttext.load_model(str(lid.default_model_path()))
    probs = []
    for text in texts:
        labels, p = model.predict(text, k=-1, threshold=0.0)
        full = dict(zip(labels, p.tolist(), strict=True))
        probs.append({tag: full.get(f"__label__{tag}", 0.0) for tag in LANGS})  # a label left out has p 0
    assert [max(p, key=p.get) for p in probs] == [tag for tag in LANGS for _ in range(N_DOCS)]
    with open_store(env["store"]) as st:
        row = metrics(st, [name]).row(0, named=True)
        scores = st.sql("SELECT doc, lang, score FROM classify_votes WHERE name = ?", [name])
    assert row["accuracy"] == 1.0 and row["f1_macro"] == 1.0
    assert scores.height == len(texts) * len(LANGS)
    for doc, lang, score in scores.iter_rows():
        assert score == pytest.approx(probs[doc][lang], rel=1e-6)


def test_runs_are_reused_or_ingested(env, tmp_path):
    before = {m["run_id"] for m in all_manifests(ensure_store(env["store"]))}
    name = classify(opts(env, layers=["model.layers.{2..3}.mlp"], name="sub"))  # a subset of the ingested layers
    with open_store(env["store"]) as st:
        used = set(st.sql("SELECT DISTINCT run_id FROM classify_docs WHERE name = ?", [name])["run_id"].to_list())
        units = st.sql("SELECT DISTINCT layer FROM classify_units WHERE name = ?", [name])["layer"].to_list()
    assert used <= before and len(used) == len(LANGS)
    assert {m["run_id"] for m in all_manifests(ensure_store(env["store"]))} == before
    assert set(units) <= {2, 3}
    # new texts: without a model there is nothing to ingest them with; with one they are ingested once
    (tmp_path / "de.txt").write_text("\n".join(flores_lines("deu_Latn", 2)) + "\n", encoding="utf-8")
    other = str(tmp_path / "{lang}.txt")
    with pytest.raises(UsageError, match="no ingested run covers"):
        classify(opts(env, dataset=other, langs=["de"], name="new"))
    classify(opts(env, dataset=other, langs=["de"], name="new", model=str(env["model_dir"]),
                  local_sae_dir=str(env["sae_dir"])))
    after = all_manifests(ensure_store(env["store"]))
    assert len(after) == len(before) + 1
    with open_store(env["store"]) as st:
        assert st.sql("SELECT count(*) AS n FROM classify_docs WHERE name = 'new'")["n"][0] == 2


def test_local_sae_id_is_a_hash_of_every_hookpoints_files(env, tmp_path, monkeypatch):
    def by_hand(folder, sample=None):
        h = hashlib.sha256()
        for hp in sorted(p.parent for p in folder.glob("*/cfg.json")):
            h.update(f"[{hp.name}]\n".encode())
            for f in sorted(x for x in hp.iterdir() if x.is_file()):
                data = f.read_bytes()
                h.update(f"{f.name}:{len(data)}\n".encode())
                if sample is None or len(data) <= sample[1]:
                    h.update(data)
                else:
                    step = (len(data) - sample[0]) // 255
                    h.update(b"".join(data[i * step:i * step + sample[0]] for i in range(256)))
        return f"local:{h.hexdigest()[:16]}"

    folder = shutil.copytree(env["sae_dir"], tmp_path / "saes")
    assert sae_identity.local_sae_id(folder) == sae_identity.sae_id(None, folder) == by_hand(folder)
    assert sae_identity.local_sae_id(env["sae_dir"]) == by_hand(folder)  # another path, the same SAEs
    monkeypatch.setattr(sae_identity, "SAE_FULL_HASH", 1000)
    monkeypatch.setattr(sae_identity, "SAE_SAMPLE_BYTES", 16)
    sae_identity._local_sae_id.cache_clear()
    assert sae_identity.local_sae_id(folder) == by_hand(folder, (16, 1000)) != by_hand(folder)
    sae_identity._local_sae_id.cache_clear()
    real_open = Path.open

    def unreadable(self, *args, **kwargs):
        if self.suffix == ".safetensors":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", unreadable)
    with pytest.raises(UsageError, match=r"^cannot read SAE folder .*saes \(Permission denied\): check"):
        sae_identity.local_sae_id(folder)


def test_runs_follow_their_saes_when_the_store_moves(env, tmp_path):
    """A store copied elsewhere with its SAE folder re-uses its runs through the new folder, also where the runs
    recorded the old absolute folder path (stores written before content identities); SAEs retrained in place
    match none of them."""
    store = shutil.copytree(env["store"], tmp_path / "store")
    saes = shutil.copytree(env["sae_dir"], tmp_path / "moved-saes")
    before = {m["run_id"] for m in all_manifests(ensure_store(store))}

    def used(name: str) -> set[str]:
        classify(opts(env, store=str(store), name=name, model=str(env["model_dir"]), local_sae_dir=str(saes)))
        with open_store(store) as st:
            return set(st.sql("SELECT DISTINCT run_id FROM classify_docs WHERE name = ?", [name])["run_id"].to_list())

    assert len(used("moved")) == len(LANGS) and used("moved-2") <= before
    records = {path: path.read_text() for path in (store / "runs").glob("[!_]*.json")}
    for path, text in records.items():
        record = json.loads(text)
        assert record["sae_model"] == sae_identity.local_sae_id(saes)
        assert record["sae_path"] == str(env["sae_dir"].resolve())  # where the folder was at ingestion
        path.write_text(json.dumps({**record, "sae_model": str(saes.resolve())}))  # as older stores recorded it
    assert used("legacy") <= before
    assert {m["run_id"] for m in all_manifests(ensure_store(store))} == before
    for path, text in records.items():  # a recorded path names whatever the folder holds now: back to content ids
        path.write_text(text)
    weights = next(saes.glob("*/sae.safetensors"))
    tensors = load_file(weights)
    key = next(iter(tensors))
    tensors[key] = tensors[key] + 1.0
    save_file(tensors, weights)
    retrained = used("retrained")
    assert not retrained & before and len(retrained) == len(LANGS)
    with open_store(store) as st:
        paths = st.sql("SELECT DISTINCT sae_path FROM runs WHERE list_contains(?, run_id)", [sorted(retrained)])
    assert paths["sae_path"].to_list() == [str(saes.resolve())]


def test_bad_options_raise_one_line_errors(env):
    with pytest.raises(UsageError, match="unknown --classifier-type"):
        classify(opts(env, classifier="bayes"))
    with pytest.raises(UsageError, match="exactly one of"):
        classify(opts(env, feature_set=None))
    with pytest.raises(UsageError, match="holds sae units, not neuron"):
        classify(opts(env, classifier="neuron-count", model="x"))


def test_cli_classify_and_report(env):
    runner = CliRunner()
    classify(opts(env, classifier="fasttext", feature_set=None, name="ft2"))
    args = ["classify", env["dataset"], "--lang", "en,th,ja", "--feature-set", "S", "--store", str(env["store"]),
            "--name", "cli", "--format", "json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    with open_store(env["store"]) as st:
        want = metrics(st, ["cli"]).row(0, named=True)
        side, _per_class = compare(st, ["cli", "ft2"])
    assert rows[0]["accuracy"] == pytest.approx(want["accuracy"])
    preds = {d: vote(s) for d, s in hand_scores(env, "sae-count").items()}
    pairs = [(label, preds[d]) for d, label in env["docs"].select("doc_id", "lang").iter_rows()]
    assert rows[0]["accuracy"] == pytest.approx(sum(y == p for y, p in pairs) / len(pairs))
    res = runner.invoke(app, ["report", "classify", "cli", "ft2", "--store", str(env["store"]), "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert pl.read_csv(res.stdout.encode()).equals(side)
    res = runner.invoke(app, ["report", "classify", "cli", "--store", str(env["store"])])
    assert res.exit_code == 0 and "confusion" in res.stdout
    # the three tables (metrics, per class, confusion) against the hand votes of the default sae-count
    order = ["en", "ja", "th"]  # English, Japanese, Thai
    rows = table_rows(res.stdout)
    head, per_class, conf = rows[0], rows[1:4], rows[4:]
    assert head[0] == "cli" and head[2:5] == [str(len(pairs)), "3", str(sum(p == "unknown" for _, p in pairs))]
    assert float(head[5]) == pytest.approx(sum(y == p for y, p in pairs) / len(pairs), abs=1e-4)
    for row, c in zip(per_class, order, strict=True):
        support, predicted = sum(y == c for y, _ in pairs), sum(p == c for _, p in pairs)
        tp = sum(y == p == c for y, p in pairs)
        prec, rec = tp / predicted if predicted else 0.0, tp / support
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        assert row[:4] == [c, str(support), str(predicted), str(tp)]
        assert [float(x) for x in row[4:]] == pytest.approx([prec, rec, f1], abs=1e-4)
    want = Counter(pairs)
    assert conf == [[y, *(str(want[(y, p)]) if want[(y, p)] else "·" for p in order)] for y in order]
    res = runner.invoke(app, ["report", "classify", "nope", "--store", str(env["store"])])
    assert res.exit_code == 2 and "no classify result named 'nope'" in res.output
    res = runner.invoke(app, ["classify", env["dataset"], "--lang", "en", "--classifier-type", "x",
                              "--store", str(env["store"])])
    assert res.exit_code == 2 and res.output.count("\n") == 1
