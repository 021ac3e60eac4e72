"""Multi-value options the argparse way, repeated and comma-separated; paper-only flags; value aliases."""

from __future__ import annotations

from typing import Annotated, Optional

import pytest
import typer
from typer.testing import CliRunner

from langfeat.cli.app import App, gather_values, split_values
from langfeat.options import CheckOptions, ClassifyOptions, PplOptions


def test_split_values_keeps_brace_patterns_whole():
    assert split_values(["en,de", " fr ", ""]) == ["en", "de", "fr"]
    assert split_values("facebook/xnli:{en,de},flores:{eng_Latn,deu_Latn}") == [
        "facebook/xnli:{en,de}", "flores:{eng_Latn,deu_Latn}"]
    assert split_values(None) == []


def test_gather_values_rewrites_argv():
    multi = {"--lang": "--lang", "-l": "--lang", "--multiplier": "--multiplier", "--text": "--text"}
    args = ["m", "d", "--lang", "en", "de,fr", "--split", "test", "-l", "th", "--multiplier", "-0.2", "0.4,-1",
            "--text", "a, b", "c", "--flag", "--", "--lang", "x"]
    assert gather_values(args, multi, no_split={"--text"}) == [
        "m", "d", "--lang", "en", "--lang", "de", "--lang", "fr", "--split", "test", "--lang", "th",
        "--multiplier", "-0.2", "--multiplier", "0.4", "--multiplier", "-1", "--text", "a, b", "--text", "c",
        "--flag", "--", "--lang", "x"]
    assert gather_values(["--lang=en", "de"], multi) == ["--lang", "en", "--lang", "de"]


def _app() -> tuple[App, dict]:
    seen: dict = {}
    app = App()

    @app.command("probe")
    def probe(
        model: Annotated[str, typer.Argument()],
        langs: Annotated[list[str], typer.Option("--lang", "-l")],
        layers: Annotated[Optional[list[str]], typer.Option("--layer")] = None,  # noqa: UP045
        multipliers: Annotated[list[float], typer.Option("--multiplier")] = [1.0],  # noqa: B006
        texts: Annotated[Optional[list[str]], typer.Option("--text")] = None,  # noqa: UP045
        split: str = "train",
    ) -> None:
        seen.update(model=model, langs=langs, layers=layers, multipliers=multipliers, texts=texts, split=split)

    @app.command("other")
    def other() -> None:  # a second command, so probe is a subcommand
        pass

    return app, seen


@pytest.mark.parametrize("argv", [
    ["--lang", "en", "de", "fr"],
    ["--lang", "en", "--lang", "de", "--lang", "fr"],
    ["--lang", "en,de,fr"],
    ["-l", "en", "de", "-l", "fr"],
    ["--lang=en,de", "fr"],
])
def test_three_forms_mean_the_same(argv):
    app, seen = _app()
    res = CliRunner().invoke(app, ["probe", "M", *argv, "--split", "test"])
    assert res.exit_code == 0, res.output
    assert seen["langs"] == ["en", "de", "fr"] and seen["split"] == "test" and seen["model"] == "M"


def test_bash_expanded_layers_negative_numbers_and_free_text():
    app, seen = _app()
    layers = [f"model.layers.{n}.mlp" for n in range(16)]  # what bash makes of model.layers.{0..15}.mlp
    res = CliRunner().invoke(app, ["probe", "M", "--layer", *layers, "--lang", "en", "--multiplier", "-0.2", "0,1.5",
                                   "--text", "Hello, world", "Guten Tag"])
    assert res.exit_code == 0, res.output
    assert seen["layers"] == layers
    assert seen["multipliers"] == [-0.2, 0.0, 1.5]
    assert seen["texts"] == ["Hello, world", "Guten Tag"]
    assert seen["langs"] == ["en"]


def test_paper_output_flags_give_one_line_errors():
    from langfeat.cli import app

    for argv, fix in [
        (["ingest", "m", "d", "--lang", "en", "--out-dir", "x"], "--store"),
        (["identify", "--out-filename", "lape_all.pt"], "--name"),
        (["identify", "--in-path", "sae_features_count/x"], "import-counts"),
        (["ppl", "m", "d", "--lang", "en", "--out-path", "x.pt"], "--store"),
        (["ppl", "m", "d", "--lang", "en", "--local-path", "x"], "DATASET"),
        (["check", "--model", "m", "--text", "a", "--interpretation-folder", "f"], "import-explanations"),
    ]:
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, (argv, res.output)
        lines = [line for line in res.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {argv[-2]} has no meaning here:"), res.output
        assert fix in lines[0] and "Traceback" not in res.output


def test_paper_value_spellings_are_normalised():
    assert ClassifyOptions(dataset="d", langs=["en"], classifier="min-max").classifier == "sae-min-max"
    assert CheckOptions(texts=["a"], model="m", classifier="count").classifier == "sae-count"
    for paper, ours in [("final_indice_global_max_active", "max"), ("final_indice_global_min_active", "min"),
                        ("final_indice_global_avg_active", "avg")]:
        assert PplOptions(model="m", dataset="d", langs=["en"], lape_value_type=paper).lape_value_type == ours
    # The paper's ppl.py defaults: α = −1 for sae-features; neuron scaling takes α from --value.
    assert PplOptions(model="m", dataset="d", langs=["en"], intervention_type="sae-features"
                      ).paper_multiplier().multiplier == -1.0
    assert PplOptions(model="m", dataset="d", langs=["en"], intervention_type="neuron", neuron_method="scaling",
                      value=-0.3).paper_multiplier().multiplier == -0.3
    assert PplOptions(model="m", dataset="d", langs=["en"]).paper_multiplier().multiplier is None
