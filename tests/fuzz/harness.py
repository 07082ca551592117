"""Run generated documents through `gk apply` / `gk patch` in-process and check what each did.

For every case: no traceback (an exception other than the CLI's own exit), exit status 0 or 1, a refused case
prints error lines that each name a field path or a position in the input and writes nothing at all (the
store's write counter, event count and object count are compared before and after), and an accepted case
leaves stored objects that pass validation again (what was accepted is what would be accepted).
"""

from __future__ import annotations

import re
import sqlite3
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import typer
import typer.main
import typer.testing
import yaml
from typer.testing import CliRunner

from gamekeeper.api.kube_rules import annotation_problems, label_problems
from gamekeeper.api.loading import InvalidObject, validate_object
from gamekeeper.cli.main import app
from gamekeeper.store.sqlite import SqliteState
from tests.fuzz.generate import Case, base_gss, cases

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images.yaml"
# A refused case's line must say where: a field path, or a place in the input for file-level problems.
WHERE = re.compile(r"(\b(spec|metadata|status|kind|apiVersion|document \d+)\b|line \d+|byte \d+|--patch|UTF-|"
                   r"no objects found)")
# `<field path>: <problem>`; a path may hold any key the user wrote (`metadata.labels[a b]`, `/x`).
FIELD = re.compile(r"^[^\s:][^:]*: \S")
DOCUMENT = re.compile(r"^ \(document \d+\)")
FOOTERS = ("nothing was applied", "nothing was patched")


@dataclass
class Figures:
    seed: int
    documents: int = 0
    applied: int = 0
    refused: int = 0
    tracebacks: int = 0
    partial_writes: int = 0
    unclear_errors: int = 0
    invalid_accepted: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest: float = 0.0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.tracebacks + self.partial_writes + self.unclear_errors + self.invalid_accepted

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_kind.items()))
        return (f"seed {self.seed}: {self.documents} documents ({kinds}) in {self.seconds:.1f} s: "
                f"{self.applied} applied, {self.refused} refused; tracebacks {self.tracebacks}, partial writes "
                f"{self.partial_writes}, errors not naming a field {self.unclear_errors}, invalid objects "
                f"accepted {self.invalid_accepted}; slowest case {self.slowest * 1000:.0f} ms")


class Harness:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.runner = CliRunner()
        self.command = typer.main.get_command(app)
        self.file = state_dir.parent / "fuzz-input.yaml"
        state_dir.mkdir(parents=True, exist_ok=True)
        self._seed_objects()

    def _gk(self, *args: str, stdin: bytes | None = None) -> Any:
        # The click command is built once: typer rebuilds it on every invoke, which costs more than the case.
        with mock.patch.object(typer.testing, "_get_command", lambda _app: self.command):
            return self.runner.invoke(app, [*args, "--state-dir", str(self.state_dir)], input=stdin,
                                      env={"COLUMNS": "100000"}, catch_exceptions=True)

    def _seed_objects(self) -> None:
        """The targets of the patches: a set, and a GameServer and pod of it (no controller runs)."""
        import random

        gss = base_gss(random.Random(0))
        gss["metadata"]["name"] = "fuzz-0"
        self.file.write_text(yaml.safe_dump(gss))
        result = self._gk("apply", "-f", str(self.file), "--images", str(IMAGES))
        assert result.exit_code == 0, result.output
        state = SqliteState(self.state_dir)
        labels = {"game.kruise.io/owner-gss": "fuzz-0"}
        state.create({"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
                      "metadata": {"name": "fuzz-0-0", "namespace": "default", "labels": labels}, "spec": {}})
        state.create({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "fuzz-0-0", "namespace": "default", "labels": labels},
                      "spec": {"containers": [gss["spec"]["gameServerTemplate"]["spec"]["containers"][0]]}})

    def snapshot(self) -> tuple[int, int, int, int]:
        with sqlite3.connect(self.state_dir / "state.db") as db:
            rv = db.execute("SELECT rv FROM counter").fetchone()[0]
            changes = db.execute("SELECT count(*) FROM changes").fetchone()[0]
            events = db.execute("SELECT count(*) FROM events").fetchone()[0]
            objects = db.execute("SELECT count(*) FROM objects").fetchone()[0]
        db.close()
        return rv, changes, events, objects

    def stored_problems(self) -> list[str]:
        """Every stored object checked again as an applied document would be."""
        problems: list[str] = []
        with sqlite3.connect(self.state_dir / "state.db") as db:
            rows = db.execute("SELECT kind, name, body FROM objects").fetchall()
        db.close()
        import json

        for kind, name, text in rows:
            body = json.loads(text)
            meta = body.get("metadata") or {}
            if kind == "Pod":
                problems += [f"Pod {name}: {p}" for p in label_problems(meta.get("labels"), "metadata.labels")
                             + annotation_problems(meta.get("annotations"), "metadata.annotations")]
                continue
            check = {k: v for k, v in body.items() if k != "status"}
            check["metadata"] = {k: v for k, v in meta.items() if k in ("name", "namespace", "labels", "annotations")}
            try:
                validate_object(check, f"{kind} {name}")
            except InvalidObject as err:
                problems += err.problems
        return problems

    def _names_a_place(self, line: str) -> bool:
        """`<source>[ (document N)]: <field path>: <problem>`, or a problem that names a place in the input."""
        for source in (str(self.file), "-"):
            if line.startswith(source + ": ") or line.startswith(source + " (document "):
                line = DOCUMENT.sub("", line[len(source):]).removeprefix(": ")
                break
        return bool(FIELD.match(line) or WHERE.search(line))

    def run(self, case: Case, figures: Figures) -> None:
        before = self.snapshot()
        started = time.monotonic()
        if case.command == "apply":
            if case.payload[:1] == b"a" and len(case.payload) % 7 == 0:
                result = self._gk("apply", "-f", "-", stdin=case.payload)
            else:
                self.file.write_bytes(case.payload)
                result = self._gk("apply", "-f", str(self.file))
        else:
            resource, name = case.target
            text = case.payload.decode("utf-8", errors="surrogateescape")
            result = self._gk("patch", resource, name, "-p", text)
        figures.slowest = max(figures.slowest, time.monotonic() - started)
        figures.documents += 1
        figures.by_kind[case.kind] += 1
        shown = case.payload[:160]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            figures.tracebacks += 1
            tb = "".join(traceback.format_exception(result.exception)).strip().splitlines()
            figures.failures.append(f"traceback ({case.kind}) {shown!r}: {' / '.join(tb[-3:])}")
            return
        after = self.snapshot()
        if result.exit_code == 0:
            figures.applied += 1
            if after != before:
                problems = self.stored_problems()
                if problems:
                    figures.invalid_accepted += 1
                    figures.failures.append(f"accepted but invalid ({case.kind}) {shown!r}: {problems[0]}")
            return
        figures.refused += 1
        if after != before:
            figures.partial_writes += 1
            figures.failures.append(f"refused but wrote ({case.kind}) {shown!r}: {before} -> {after}")
        lines = [line.removeprefix("error: ") for line in result.output.splitlines() if line.startswith("error:")]
        lines = [line for line in lines if line not in FOOTERS]
        unclear = [line for line in lines if not self._names_a_place(line) or len(line) > 2000]
        if result.exit_code != 1 or not lines or unclear:
            figures.unclear_errors += 1
            figures.failures.append(f"unclear error ({case.kind}) exit {result.exit_code} {shown!r}: "
                                    f"{(unclear or [result.output[-300:]])[0][:300]!r}")


def fuzz(seed: int, count: int, state_dir: Path, progress: Callable[[Figures], None] | None = None) -> Figures:
    figures = Figures(seed=seed)
    harness = Harness(state_dir)
    started = time.monotonic()
    for case in cases(seed, count):
        harness.run(case, figures)
        if progress is not None and figures.documents % 1000 == 0:
            figures.seconds = time.monotonic() - started
            progress(figures)
    figures.seconds = time.monotonic() - started
    return figures
