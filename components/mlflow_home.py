"""A project moved or copied together with its `mlflow.db` and `mlartifacts/` keeps every run and registered model
version loadable.

MLflow's SQL store records absolute artifact locations (an experiment's `file:///…/mlartifacts`, each run's
artifact URI, each logged model's and model version's storage location), resolved when they were created
(mlflow.utils.uri.resolve_uri_if_local makes a relative location absolute). After `mv proj proj2` they still name
proj/: a new run would re-create proj/mlartifacts/ and an earlier version fails to load (`No such artifact: ''`).

So every time lnlflow opens the project's own store (`sqlite:///<root>/mlflow.db`, the default), the locations
under the root the store was last used from (the folder holding an experiment's `mlartifacts`) are rewritten to
this root, in one transaction: `lnlflow track` (and `make mlflow-ui`) after a move or copy re-anchor it. Stores
elsewhere (a tracking server, another database) are left alone.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

ARTIFACTS = "mlartifacts"
# (table, column): every place MLflow 3.x writes an artifact location (a column a store lacks is skipped)
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
             ("model_versions", "source"), ("model_versions", "storage_location"))
TRACE_LOCATION = "mlflow.artifactLocation"  # a trace's artifact location, kept as a trace tag


def default_tracking_uri(root: Path) -> str:
    """SQLite in the project root (the file store is refused by MLflow >= 3.13)."""
    return f"sqlite:///{(root / 'mlflow.db').resolve()}"


def _local(location: str) -> Path | None:
    parsed = urlparse(location)
    return Path(url2pathname(parsed.path)) if parsed.scheme in ("", "file") and parsed.path else None


def project_db(root: Path, uri: str) -> Path | None:
    """The SQLite file of `uri` when it is the project's own store (`<root>/mlflow.db`), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    if not db.is_absolute():
        db = Path.cwd() / db
    own = (root / "mlflow.db").resolve()
    return own if db.resolve() == own and own.is_file() else None


def _previous_roots(db: sqlite3.Connection, root: Path) -> list[Path]:
    """The folders other than `root` that hold an experiment's `mlartifacts` location: where the store was used."""
    olds = []
    for (location,) in db.execute("SELECT artifact_location FROM experiments"):
        local = _local(location or "")
        if local is not None and local.name == ARTIFACTS and local.is_absolute() and local.parent != root:
            olds.append(local.parent)
    return sorted(set(olds))


def _rewrite(db: sqlite3.Connection, old: Path, new: Path) -> int:
    """Replace the prefix `old/` by `new/` (as a path and as a file URI) in every artifact location; rows changed."""
    changed = 0
    prefixes = [(f"{old}/", f"{new}/"), (f"{old.as_uri()}/", f"{new.as_uri()}/")]
    targets = [(table, column, "") for table, column in LOCATIONS]
    targets.append(("trace_tags", "value", f" AND key = '{TRACE_LOCATION}'"))
    for table, column, extra in targets:
        for before, after in prefixes:
            with contextlib.suppress(sqlite3.OperationalError):  # a table or column this MLflow version lacks
                changed += db.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE substr({column}, 1, ?) = ?{extra}", (after, len(before) + 1, len(before), before),
                ).rowcount
    return changed


def reanchor(root: Path, uri: str, *, say: str = "track") -> str:
    """Point the project's store at `root`'s artifacts if it was last used from another folder; returns `uri`."""
    path = project_db(root, uri)
    if path is None:
        return uri
    root = root.resolve()
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, db:
            olds = _previous_roots(db, root)
            changed = sum(_rewrite(db, old, root) for old in olds)
    except sqlite3.Error:
        return uri  # not (yet) an MLflow store: MLflow creates or reports it
    if changed:
        print(f"{say}: this project's MLflow store was used from {', '.join(map(str, olds))}; its artifact "
              f"locations now point into {root / ARTIFACTS} ({changed} records)")
    return uri


def main() -> None:
    """`python -m components.mlflow_home`: re-anchor the store of the project in the current folder."""
    reanchor(Path.cwd(), default_tracking_uri(Path.cwd()), say="mlflow")


if __name__ == "__main__":
    sys.exit(main())
