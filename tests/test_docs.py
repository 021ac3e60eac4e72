"""The docs cannot drift: generated option tables equal the CLI's own, the schema page equals the SQL's, every
command is documented, and the README stays a front door."""

from __future__ import annotations

from pathlib import Path

from langfeat.cli import docgen

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_option_tables_match_the_cli():
    stale = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "schema.md"
             and docgen.render_options(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")]
    assert stale == [], f"run `python -m langfeat.cli.docgen docs`: stale option tables in {stale}"


def test_every_command_is_documented():
    documented = docgen.documented_commands(DOCS)
    missing = [name for name, _ in docgen.commands() if name not in documented]
    assert missing == []


def test_every_option_of_every_command_is_in_its_table():
    # the generated table lists exactly the options --help lists (hidden ones excluded)
    for name, cmd in docgen.commands():
        table = docgen.options_table(cmd)
        for param in cmd.params:
            if getattr(param, "hidden", False) or param.param_type_name != "option":
                continue
            for opt in param.opts:
                assert f"`{opt}`" in table, (name, opt)


def test_schema_page_matches_the_sql():
    assert (DOCS / "schema.md").read_text(encoding="utf-8") == docgen.schema_markdown(), (
        "run `python -m langfeat.cli.docgen docs`"
    )


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "make demo" in text and "make test" in text
    for link in ["docs/README.md"]:
        assert link in text


def test_docs_links_resolve():
    import re

    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
