"""Where things live in a store directory, and how ids are made. The one place for store paths.

    <store>/
      catalog.duckdb                      DuckDB catalog: views over the files below (rebuildable)
      runs/<run_id>.json                  one manifest per run (status: running | complete | failed | removing)
      runs/<run_id>.lock                  held (flock) by the process writing the run
      data/run_id=<R>/lang=<L>/           one committed run (moved by one rename; shown once its manifest is complete)
          files.json                      row count of every file below (checked by `langfeat verify`)
          events/layer=<N>/part-<shard>.parquet
          docs/part-<shard>.parquet
          tokens/part-<shard>.parquet
          feature_counts/part-0.parquet
          neuron_counts/part-0.parquet
          neuron_docs/layer=<N>/part-<shard>.parquet   (runs ingested with --neuron-docs)
      data/run_id=_schema/lang=und/...    zero-row files that fix each table's schema for an empty store
      _work/<R>/                          a run being written (invisible to readers), resumable shard by shard
      sets/name=<name>/features.parquet   named feature sets (+ params.json)
      results/<table>/name=<name>/*.parquet  experiment results (classify, ppl, generate, ...), + params.json
"""

from __future__ import annotations

import os
import re
from functools import cache
from importlib import resources
from pathlib import Path

import pyarrow as pa

STORE_ENV = "LANGFEAT_STORE"
DEFAULT_STORE = "langfeat-store"
CATALOG = "catalog.duckdb"
SCHEMA_RUN = "_schema"
TABLES = ("events", "docs", "tokens", "feature_counts", "neuron_counts", "neuron_docs")
LAYERED = ("events", "neuron_docs")  # tables whose files sit in layer=<N> folders (layer: a partition column)
RUN_BITS = 40  # doc_id = (run_num << RUN_BITS) | row
_FILE_IN_ERROR = re.compile(r"""[Ff]ile ['"]([^'"]+)['"]""")


def store_path(path: str | os.PathLike | None = None) -> Path:
    """The store directory: ``path``, else ``$LANGFEAT_STORE``, else ``./langfeat-store``."""
    return Path(path or os.environ.get(STORE_ENV) or DEFAULT_STORE).expanduser().resolve()


def doc_id(run_num: int, row: int) -> int:
    """The store-unique document id of source ``row`` in run number ``run_num``."""
    if not 0 <= row < (1 << RUN_BITS):
        raise ValueError(f"row {row} out of range")
    return (int(run_num) << RUN_BITS) | int(row)


class Layout:
    """Paths inside one store directory."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = store_path(root)

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def work_dir(self) -> Path:
        return self.root / "_work"

    @property
    def sets_dir(self) -> Path:
        return self.root / "sets"

    def manifest(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def run_lock(self, run_id: str) -> Path:
        """The lock file its writer holds (``flock``) while the run is being written."""
        return self.runs_dir / f"{run_id}.lock"

    def run_data(self, run_id: str) -> Path:
        """The committed directory of a run (holds one ``lang=<L>`` folder)."""
        return self.data_dir / f"run_id={run_id}"

    def run_work(self, run_id: str) -> Path:
        """The staging directory of a run being written."""
        return self.work_dir / run_id

    def set_dir(self, name: str) -> Path:
        """The folder of the named feature set ``name``."""
        return self.sets_dir / f"name={name}"

    def result_dir(self, table: str, name: str) -> Path:
        """The folder of experiment result ``name`` in result table ``table`` (``results/<table>/name=<name>``)."""
        return self.root / "results" / table / f"name={name}"

    def placeholder(self, table: str) -> Path:
        """The zero-row file that gives ``table``'s glob a match (and its schema) in an empty store."""
        if table == "feature_sets":
            return self.set_dir(SCHEMA_RUN) / "features.parquet"
        if table not in TABLES:
            return self.result_dir(table, SCHEMA_RUN) / "part-schema.parquet"
        base = self.data_dir / f"run_id={SCHEMA_RUN}" / "lang=und"
        sub = f"{table}/layer=-1" if table in LAYERED else table
        return base / sub / "part-schema.parquet"

    def table_glob(self, table: str) -> str:
        """The glob every view of ``table`` reads (absolute, forward slashes): a file table of ``db/tables.sql``,
        ``runs`` (the manifests) or ``feature_set_params`` (the sets' params.json)."""
        if table == "runs":
            return self.runs_dir.as_posix() + "/*.json"
        if table == "feature_set_params":
            return self.sets_dir.as_posix() + "/name=*/params.json"
        if table == "feature_sets":
            return self.sets_dir.as_posix() + "/name=*/features.parquet"
        if table not in TABLES:
            return (self.root / "results" / table).as_posix() + "/name=*/*.parquet"
        sub = f"{table}/layer=*/*.parquet" if table in LAYERED else f"{table}/*.parquet"
        return (self.data_dir / "run_id=*" / "lang=*").as_posix() + "/" + sub


def partitions(table: str) -> dict[str, str]:
    """The hive partition columns of ``table``'s paths and their DuckDB types (first: the one placeholders set
    to ``_schema``)."""
    if table not in TABLES:
        return {"name": "VARCHAR"}  # feature sets and experiment results
    cols = {"run_id": "VARCHAR", "lang": "VARCHAR"}
    return {**cols, "layer": "INTEGER"} if table in LAYERED else cols


_COMMENT_TYPE = re.compile(r"--\s*parquet:\s*(\w+)")
_DUCK_TO_ARROW = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "SMALLINT": pa.int16(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
}


def sql_text(package: str, name: str) -> str:
    """Read a SQL file shipped with langfeat (``package`` is ``'db'`` or ``'queries'``; ``name`` may hold a
    sub-folder, ``'stats/10_stat_units.sql'``)."""
    return resources.files(f"langfeat.sql.{package}").joinpath(*name.split("/")).read_text(encoding="utf-8")


@cache
def arrow_schemas() -> dict[str, pa.Schema]:
    """Arrow schemas of the store's files, parsed from ``db/tables.sql``."""
    text = sql_text("db", "tables.sql")
    schemas: dict[str, pa.Schema] = {}
    for match in re.finditer(r"CREATE TABLE (\w+) \((.*?)\n\);", text, re.S):
        fields = []
        for line in match.group(2).splitlines():
            line = line.strip()
            if not line or line.startswith("--"):
                continue
            parts = line.split()
            name, typ = parts[0].strip('"'), parts[1].rstrip(",")
            arrow_type = _DUCK_TO_ARROW[typ]
            override = _COMMENT_TYPE.search(line)
            if override and override.group(1) == "float16":
                arrow_type = pa.float16()
            fields.append(pa.field(name, arrow_type, nullable="NOT NULL" not in line))
        schemas[match.group(1)] = pa.schema(fields)
    return schemas


def corrupt_file_message(root: Path, error: str) -> str | None:
    """A one-line message naming the store file a DuckDB error is about, with the fix (None: not a file error)."""
    match = _FILE_IN_ERROR.search(error)
    if not match:
        return None
    path = Path(match.group(1))
    try:
        rel = path.resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return None
    run = re.search(r"run_id=([^/]+)/", rel)
    if run and run.group(1) != SCHEMA_RUN:
        fix = f"remove its run with `langfeat rm {run.group(1)}` and ingest it again"
    elif rel.startswith(("sets/", "results/")):
        fix = f"delete {Path(rel).parent} (or rerun the command that wrote it with --overwrite)"
    else:
        fix = "run `langfeat catalog` to rewrite the store's placeholder files"
    return f"store file {rel} is corrupt ({error}): {fix}; `langfeat verify` lists every problem"
