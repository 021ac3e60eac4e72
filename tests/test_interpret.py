"""`langfeat interpret`: example selection against Polars, prompts and retries against a loopback
chat-completions server, resume from the cache, the local model path, and the scoring arithmetic by hand."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from conftest import flores_lines
from langfeat.cli import app
from langfeat.experiments import interpret as ip
from langfeat.experiments.check import load_explanations, token_pieces
from langfeat.ingest import IngestConfig, ingest_texts
from langfeat.models import load_model
from langfeat.store import ensure_store, open_store
from langfeat.store.results import to_arrow, write_result

# small settings: ctx 8 tokens, 3 train, 2 quantiles x 2 test, 3 non-activating
SMALL = dict(example_ctx_len=8, n_examples_train=3, n_examples_test=4, n_quantiles=2, n_non_activating=3)
SET = [("en", 1, 41, 1), ("en", 2, 16, 2), ("de", 1, 3, 1), ("de", 2, 7, 2), ("de", 1, 41, 3)]


@pytest.fixture(scope="module")
def toy(toy_model_dir):
    return load_model(str(toy_model_dir), device="cpu")


@pytest.fixture(scope="module")
def store(toy, toy_sae_dir, tmp_path_factory) -> Path:
    """Two runs (en, de: 12 FLORES sentences each, layers 1-2) and feature set S (layer 1 feature 41 in both)."""
    model, tokenizer = toy
    root = tmp_path_factory.mktemp("interp") / "store"
    cfg = IngestConfig(model="toy", dataset="memory", langs=[], layers=["model.layers.{1..2}.mlp"],
                       local_sae_dir=str(toy_sae_dir), store=str(root), device="cpu")
    for lang, code in [("en", "eng_Latn"), ("de", "deu_Latn")]:
        ingest_texts(flores_lines(code, 12), lang, "flores", cfg, model=model, tokenizer=tokenizer)
    layout = ensure_store(root)
    feats = pl.DataFrame(SET, orient="row", schema=["lang", "layer", "feature", "rank"]).with_columns(
        algorithm=pl.lit("imported"), kind=pl.lit("sae"))
    folder = layout.set_dir("S")
    folder.mkdir(parents=True)
    pq.write_table(to_arrow(feats, "feature_sets"), folder / "features.parquet")
    return root


# ---------------------------------------------------------------------------------------------------------------
# example selection: SQL macros against Polars over the raw files


def _files(root: Path, table: str) -> pl.DataFrame:
    sub = "events/*/*.parquet" if table == "events" else f"{table}/*.parquet"
    df = pl.read_parquet(f"{root}/data/*/*/{sub}", hive_partitioning=True)
    return df.filter(pl.col("run_id") != "_schema")


def _md5(*parts) -> str:
    return hashlib.md5(":".join(str(p) for p in parts).encode()).hexdigest()


def expected_examples(root: Path, layer: int, feature: int, ctx: int, n_train: int, n_test: int, n_q: int,
                      n_quiet: int, seed: int) -> dict[str, list[tuple]]:
    """Per split, (run_id, doc_id, start, end, max_act) in example order, computed in Polars / plain Python."""
    ev = _files(root, "events").filter((pl.col("layer") == layer) & (pl.col("feature") == feature))
    docs = _files(root, "docs")
    ev = ev.with_columns(block=pl.col("pos") // ctx).sort("run_id", "doc_id", "block", pl.col("act"), "pos",
                                                          descending=[False, False, False, True, False])
    blocks = ev.group_by("run_id", "doc_id", "block", maintain_order=True).agg(
        pl.col("act").first().alias("max_act"), pl.col("pos").first().alias("max_pos"))
    ntok = dict(zip(zip(docs["run_id"], docs["doc_id"], strict=True), docs["n_tokens"], strict=True))
    rows = []
    for r in blocks.iter_rows(named=True):
        n = ntok[(r["run_id"], r["doc_id"])]
        start = max(0, min(r["max_pos"] - ctx // 2, n - ctx))
        rows.append((r["run_id"], r["doc_id"], r["block"], start, min(start + ctx, n), r["max_act"]))
    top = sorted(rows, key=lambda t: (-t[5], t[0], t[1], t[2]))
    train, rest = top[:n_train], sorted(top[n_train:], key=lambda t: (t[5], t[0], t[1], t[2]))
    test = []
    m = len(rest)
    sizes = [m // n_q + (1 if i < m % n_q else 0) for i in range(n_q)]
    at = 0
    for size in sizes:
        quantile = rest[at:at + size]
        at += size
        quantile.sort(key=lambda t: _md5(seed, layer, feature, t[0], t[1], t[2]))
        test += quantile[: n_test // n_q]
    fired = {(t[0], t[1], t[2]) for t in rows}
    quiet = []
    for (run_id, doc_id), n in ntok.items():
        for block in range((n + ctx - 1) // ctx):
            if (run_id, doc_id, block) not in fired:
                quiet.append((run_id, doc_id, block * ctx, min(block * ctx + ctx, n), 0.0,
                              _md5(seed, layer, feature, run_id, doc_id, block)))
    quiet = sorted(quiet, key=lambda t: t[5])[:n_quiet]
    return {"train": [(*t[:2], *t[3:]) for t in train], "test": [(*t[:2], *t[3:]) for t in test],
            "non_activating": [t[:5] for t in quiet]}


@pytest.mark.parametrize("ctx, n_train, n_test, n_q, n_quiet, seed", [(8, 3, 4, 2, 3, 42), (5, 10, 9, 3, 20, 7)])
def test_example_selection_matches_polars(store, ctx, n_train, n_test, n_q, n_quiet, seed):
    with open_store(store) as st:
        got = st.sql(f"SELECT * FROM interpret_examples('S', ctx_len := {ctx}, n_train := {n_train}, "
                     f"n_test := {n_test}, n_quantiles := {n_q}, n_non_activating := {n_quiet}, seed := {seed})")
    for _lang, layer, feature, _rank in SET:
        want = expected_examples(store, layer, feature, ctx, n_train, n_test, n_q, n_quiet, seed)
        for split, rows in want.items():
            part = got.filter((pl.col("layer") == layer) & (pl.col("feature") == feature)
                              & (pl.col("split") == split)).sort("example")
            assert part["example"].to_list() == list(range(len(rows)))
            assert list(part.select("run_id", "doc_id", "start_pos", "end_pos", "max_act").iter_rows()) == rows
        assert len(want["train"]) == n_train and len(want["non_activating"]) > 0


def test_example_tokens_and_feature_order(store):
    with open_store(store) as st:
        toks = st.sql("SELECT * FROM interpret_example_tokens('S', ctx_len := 8, n_train := 2, n_test := 2, "
                      "n_quantiles := 1, n_non_activating := 2)")
        feats = st.sql("SELECT * FROM interpret_features('S', max_features := 3) ORDER BY pick")
    tokens, events = _files(store, "tokens"), _files(store, "events")
    for (layer, feature, split, _example), part in toks.group_by("layer", "feature", "split", "example"):
        run_id, doc_id = part["run_id"][0], part["doc_id"][0]
        pos = part.sort("pos")["pos"].to_list()
        assert pos == list(range(pos[0], pos[0] + len(pos))) and len(pos) <= 8
        doc = tokens.filter((pl.col("run_id") == run_id) & (pl.col("doc_id") == doc_id)).sort("pos")
        assert part.sort("pos")["token_id"].to_list() == doc["token_id"].to_list()[pos[0]:pos[-1] + 1]
        ev = events.filter((pl.col("run_id") == run_id) & (pl.col("doc_id") == doc_id) & (pl.col("layer") == layer)
                           & (pl.col("feature") == feature))
        acts = dict(zip(ev["pos"].to_list(), ev["act"].to_list(), strict=True))
        assert part.sort("pos")["act"].to_list() == [acts.get(p, 0.0) for p in pos]
        assert (max(acts.get(p, 0.0) for p in pos) > 0) == (split != "non_activating")
    # round-robin over languages by rank: de rank 1, en rank 1, then de rank 2 (en's (1, 41) is already taken)
    assert list(feats.select("layer", "feature").iter_rows()) == [(1, 3), (1, 41), (2, 7)]
    assert feats["langs"].to_list()[1] == ["de", "en"]


# ---------------------------------------------------------------------------------------------------------------
# rendering and parsing


def test_render_marks_runs_of_tokens_by_threshold():
    pieces = ["<s>", "The", " cat", " sat", " on", " the", " mat"]
    acts = [0.0, 0.2, 3.0, 1.0, 0.0, 0.95, 0.5]
    assert ip.render(pieces, acts, 0.3) == "<s>The <<cat sat>> on <<the>> mat"  # 0.5 < 0.3 x 3
    assert ip.render(pieces, acts, None) == "<s>The cat sat on the mat"
    assert ip.render(pieces, [0.0] * 7, 0.3) == "<s>The cat sat on the mat"
    assert ip.parse_explanation("Let me think.\nExplanation: German articles.") == "German articles."
    assert ip.parse_explanation("\n  Words in French\nmore") == "Words in French"
    assert ip.parse_answers("Sure: [1, 0,1]", 3) == [True, False, True]
    assert ip.parse_answers("[1, 0]", 3) == [None, None, None]
    assert ip.parse_answers("no list", 1) == [None]


# ---------------------------------------------------------------------------------------------------------------
# the API path against a loopback chat-completions server


class FakeServer:
    """A chat-completions endpoint on 127.0.0.1: records every body; fails the first requests as scripted;
    answers explanations with a canned sentence and scorer prompts with 1 for odd-numbered excerpts."""

    def __init__(self, failures=(), stop_after: int | None = None):
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.failures = list(failures)
        self.stop_after = stop_after
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                    outer.headers.append(dict(self.headers))
                    fail = outer.failures.pop(0) if outer.failures else None
                    over = outer.stop_after is not None and len(outer.bodies) > outer.stop_after
                if over:
                    fail = 400
                if fail is not None:
                    self.send_response(fail)
                    if fail == 429:
                        self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                answer = outer.answer(body["messages"])
                self.wfile.write(json.dumps({"id": "x", "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
                ).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(messages) -> str:
        if messages[0]["content"] == ip.EXPLAIN_SYSTEM:
            return "The marked tokens look alike.\nExplanation: short function words"
        n = len(re.findall(r"^Excerpt \d+: ", messages[1]["content"], flags=re.M))
        return "[" + ", ".join("1" if i % 2 == 0 else "0" for i in range(n)) + "]"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _opts(store, url, **kw):
    base = dict(feature_set="S", explainer="openai:test-model", base_url=url, store=str(store), retry_base=0.001,
                concurrency=3, **SMALL)
    base.update(kw)
    return ip.InterpretOptions(**base)


def _excerpts(body) -> list[str]:
    return re.findall(r"^Excerpt \d+: (.*)$", body["messages"][1]["content"], flags=re.M)


def test_api_prompts_retries_and_resume(store, toy, monkeypatch):
    _, tokenizer = toy
    monkeypatch.setenv("LANGFEAT_API_KEY", "sk-test")
    server = FakeServer(failures=[429, 500])
    try:
        result = ip.interpret(_opts(store, server.url, name="api"), tokenizer=tokenizer)
    finally:
        server.close()
    n_feats = len({(layer, f) for _, layer, f, _ in SET})
    assert result.explanations.height == n_feats
    explain = [b for b in server.bodies if b["messages"][0]["content"] == ip.EXPLAIN_SYSTEM]
    scoring = [b for b in server.bodies if b["messages"][0]["content"] != ip.EXPLAIN_SYSTEM]
    # two scripted failures were retried: every request was answered once more
    assert len(server.bodies) == result.n_requests + 2 and result.n_cached == 0
    assert {h.get("Authorization") for h in server.headers} == {"Bearer sk-test"}
    assert all(b["model"] == "test-model" and b["temperature"] == 0 for b in server.bodies)
    tokens = _files(store, "tokens")
    events = _files(store, "events")
    by_prompt = {}
    for b in explain:
        by_prompt.setdefault(tuple(_excerpts(b)), 0)
        by_prompt[tuple(_excerpts(b))] += 1
    for layer, feature in sorted({(layer, f) for _, layer, f, _ in SET}):
        want = expected_examples(store, layer, feature, 8, 3, 4, 2, 3, 42)

        def text(run_id, doc_id, start, end, marked, layer=layer, feature=feature):
            ids = tokens.filter((pl.col("run_id") == run_id) & (pl.col("doc_id") == doc_id)).sort("pos")
            ids = ids["token_id"].to_list()[start:end]
            ev = events.filter((pl.col("run_id") == run_id) & (pl.col("doc_id") == doc_id)
                               & (pl.col("layer") == layer) & (pl.col("feature") == feature))
            acts = dict(zip(ev["pos"].to_list(), ev["act"].to_list(), strict=True))
            pieces, _ = token_pieces(tokenizer, ids)
            return ip.render(pieces, [acts.get(p, 0.0) for p in range(start, end)], 0.3 if marked else None)

        train = tuple(text(*t[:4], True) for t in want["train"])
        assert train in by_prompt, (layer, feature)  # the top examples, in order, marked
        assert all("<<" in t for t in train)
        detection = sorted(text(*t[:4], False) for t in [*want["test"], *want["non_activating"]])
        fuzz_true = sorted(text(*t[:4], True) for t in want["test"])
        det_seen, fuzz_seen = [], []
        for b in scoring:  # every feature got the same explanation: look for its excerpts among all prompts
            assert b["messages"][1]["content"].startswith("Explanation: short function words\n\nExcerpt 1: ")
            (det_seen if b["messages"][0]["content"] == ip.DETECTION_SYSTEM else fuzz_seen).append(_excerpts(b))
        assert all(len(e) <= 5 for e in det_seen + fuzz_seen)
        flat_det = [t for e in det_seen for t in e]
        assert all(t in flat_det for t in detection) and not any("<<" in t for t in flat_det)
        flat_fuzz = [t for e in fuzz_seen for t in e]
        assert all(t in flat_fuzz for t in fuzz_true)
        # random marks go on visible tokens (an activating text whose top token is blank shows no mark)
        assert sum("<<" in t for t in flat_fuzz) >= len(want["non_activating"])
    assert len(by_prompt) == n_feats and sum(by_prompt.values()) == n_feats + 2 - sum(
        1 for b in server.bodies[:2] if b["messages"][0]["content"] != ip.EXPLAIN_SYSTEM)
    n_det = sum(len(_excerpts(b)) for b in scoring if b["messages"][0]["content"] == ip.DETECTION_SYSTEM)
    assert n_det == result.predictions.filter(pl.col("scorer") == "detection").height
    # answers are mapped back to their examples: 1 for odd-numbered excerpts of each prompt
    assert result.predictions["prediction"].null_count() == 0

    with open_store(store) as st:
        assert st.sql("SELECT count(*) AS n FROM interpret_cache WHERE name = 'api'")["n"][0] == result.n_requests
        expl = load_explanations(st, "api")
        assert set(expl["explanation"]) == {"short function words"} and expl.height == n_feats
        scores = st.sql("SELECT * FROM interpret_scores WHERE name = 'api'")
    # the scores are the arithmetic of the stored predictions
    for r in scores.iter_rows(named=True):
        p = result.predictions.filter((pl.col("scorer") == r["scorer"]) & (pl.col("layer") == r["layer"])
                                      & (pl.col("feature") == r["feature"]))
        tp = p.filter(pl.col("activating") & pl.col("prediction")).height
        tn = p.filter(~pl.col("activating") & ~pl.col("prediction")).height
        assert r["accuracy"] == pytest.approx((tp + tn) / p.height) and r["roc_auc"] is None

    # a rerun (another name) answers everything from the cache: zero requests reach the server
    again = FakeServer()
    try:
        second = ip.interpret(_opts(store, again.url, name="api-again"), tokenizer=tokenizer)
    finally:
        again.close()
    assert again.bodies == [] and second.n_requests == 0
    assert second.predictions.equals(result.predictions)
    assert second.explanations.equals(result.explanations)


def test_api_interrupted_run_resumes_where_it_stopped(store, toy):
    _, tokenizer = toy
    broken = FakeServer(stop_after=7)
    try:
        with pytest.raises(ip.ExplainerError, match="HTTP 400"):
            ip.interpret(_opts(store, broken.url, name="cut", explainer="openai:other", concurrency=1),
                         tokenizer=tokenizer)
    finally:
        broken.close()
    with open_store(store) as st:
        assert st.sql("SELECT count(*) AS n FROM interpret_cache WHERE name = 'cut'")["n"][0] == 7
        assert st.sql("SELECT count(*) AS n FROM interpret_explanations WHERE name = 'cut'")["n"][0] == 0
    good = FakeServer()
    try:
        result = ip.interpret(_opts(store, good.url, name="cut", explainer="openai:other"), tokenizer=tokenizer)
    finally:
        good.close()
    assert result.n_cached == 7 and len(good.bodies) == result.n_requests > 0


def test_cli_interpret_and_report(store, toy_model_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli")
    server = FakeServer()
    runner = CliRunner()
    try:
        res = runner.invoke(app, ["interpret", "--feature-set", "S", "--explainer", "openai:m", "--base-url",
                                  server.url, "--tokenizer", str(toy_model_dir), "--example-ctx-len", "8",
                                  "--n-examples-train", "3", "--n-examples-test", "4", "--n-quantiles", "2",
                                  "--n-non-activating", "3", "--scorers", "detection", "--max-features", "2",
                                  "--name", "cli", "--store", str(store), "--format", "csv"])
    finally:
        server.close()
    assert res.exit_code == 0, res.output
    assert {h.get("Authorization") for h in server.headers} == {"Bearer sk-cli"}
    frame = pl.read_csv(res.stdout.encode())
    assert set(frame["score_type"]) == {"detection"} and set(frame["language"]) == {"German", "English"}
    rep = runner.invoke(app, ["report", "interpret", "cli", "--store", str(store), "--format", "json"])
    assert rep.exit_code == 0 and json.loads(rep.stdout)[0]["score_type"] == "detection"
    listing = runner.invoke(app, ["report", "interpret", "--store", str(store), "--format", "csv"])
    assert "cli,S,openai:m,2" in listing.stdout
    bad = runner.invoke(app, ["interpret", "--feature-set", "S", "--explainer", "gpt", "--store", str(store),
                              "--tokenizer", str(toy_model_dir)])
    assert bad.exit_code == 2 and "bad --explainer 'gpt'" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["interpret", "--feature-set", "nope", "--store", str(store)])
    assert missing.exit_code == 2 and "has no SAE features" in missing.output


# ---------------------------------------------------------------------------------------------------------------
# the local path with the tiny model


def test_local_explainer_probabilities(store, toy):
    model, tokenizer = toy
    local = ip.LocalExplainer("toy", loaded=(model, tokenizer))
    opts = ip.InterpretOptions(feature_set="S", explainer="local:toy", store=str(store), explain_max_tokens=6,
                               max_features=2, name="local", **SMALL)
    result = ip.interpret(opts, explainer=local, tokenizer=tokenizer)
    preds = result.predictions
    assert preds.height == result.n_requests - 2  # one request per example (and two explanations)
    assert preds["prob"].null_count() == 0
    assert (preds["prediction"] == (preds["prob"] > 0.5)).all()
    with open_store(store) as st:
        cached = st.sql("SELECT request, response FROM interpret_cache WHERE name = 'local' AND kind = 'fuzz' "
                        "ORDER BY created_at LIMIT 1")
        scores = st.sql("SELECT * FROM interpret_scores WHERE name = 'local'")
    # the cached probability equals a hand forward pass over the same prompt (no chat template: plain roles)
    request = json.loads(cached["request"][0])
    text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in request["messages"])
    ids = tokenizer(f"{text}\n\nAssistant: [")["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    pair = logits[[tokenizer("0", add_special_tokens=False)["input_ids"][0],
                   tokenizer("1", add_special_tokens=False)["input_ids"][0]]]
    assert json.loads(cached["response"][0]) == pytest.approx(torch.softmax(pair, 0).tolist(), abs=1e-6)
    assert scores.height == 4 and scores["roc_auc"].null_count() == 0


# ---------------------------------------------------------------------------------------------------------------
# scoring arithmetic against hand-computed values


def test_scores_by_hand(tmp_path):
    layout = ensure_store(tmp_path / "s")
    folder = layout.set_dir("H")
    folder.mkdir(parents=True)
    feats = pl.DataFrame([("en", 0, 1), ("de", 0, 1), ("en", 0, 2)], orient="row",
                         schema=["lang", "layer", "feature"]).with_columns(algorithm=pl.lit("x"), kind=pl.lit("sae"))
    pq.write_table(to_arrow(feats, "feature_sets"), folder / "features.parquet")
    expl = pl.DataFrame({"feature_set": "H", "layer": [0, 0], "feature": [1, 2], "explainer": "hand",
                         "n_train": 1, "explanation": ["a", "b"]})
    write_result(layout, "interpret_explanations", "h", expl)
    T, F, N = True, False, None
    rows = [  # feature 1: tp 2, fn 1, fp 1, tn 1, one unparsed answer
        (1, 0, T, T, 0.9), (1, 1, T, F, 0.4), (1, 2, T, T, 0.8), (1, 3, F, T, 0.6), (1, 4, F, F, 0.1),
        (1, 5, F, N, None),
        # feature 2: nothing predicted positive; tied probabilities 0.5 across the classes
        (2, 0, T, F, 0.5), (2, 1, T, F, 0.7), (2, 2, F, F, 0.5), (2, 3, F, F, 0.2),
    ]
    preds = pl.DataFrame(rows, orient="row", schema=["feature", "example", "activating", "prediction", "prob"]
                         ).with_columns(scorer=pl.lit("detection"), layer=pl.lit(0))
    write_result(layout, "interpret_predictions", "h", preds)
    with open_store(layout.root) as st:
        sc = {r["feature"]: r for r in st.sql("SELECT * FROM interpret_scores").iter_rows(named=True)}
        lang = {r["lang"]: r for r in st.sql("SELECT * FROM interpret_lang_scores").iter_rows(named=True)}
    one, two = sc[1], sc[2]
    assert (one["n_examples"], one["n_invalid"], one["tp"], one["fp"], one["tn"], one["fn"]) == (6, 1, 2, 1, 1, 1)
    assert one["accuracy"] == pytest.approx(3 / 5)
    assert one["precision"] == pytest.approx(2 / 3) and one["recall"] == pytest.approx(2 / 3)
    assert one["f1"] == pytest.approx(2 / 3)
    assert one["roc_auc"] == pytest.approx(5 / 6)  # 5 of the 6 (positive, negative) pairs ranked right
    assert two["accuracy"] == pytest.approx(0.5) and two["precision"] == 0 and two["recall"] == 0 and two["f1"] == 0
    assert two["roc_auc"] == pytest.approx(3.5 / 4)  # the 0.5 / 0.5 tie counts half
    assert lang["en"]["n_features"] == 2 and lang["en"]["accuracy"] == pytest.approx((0.6 + 0.5) / 2)
    assert lang["en"]["roc_auc"] == pytest.approx((5 / 6 + 3.5 / 4) / 2) and lang["en"]["n_invalid"] == 1
    assert lang["de"]["n_features"] == 1 and lang["de"]["f1"] == pytest.approx(2 / 3)
