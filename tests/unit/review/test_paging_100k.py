"""`lnlflow review serve` pages through a 100,000-row report without holding its rows: the index keeps a few
numbers per row, every page is read from disk by offset, and a decision rewrites the corrections file at once.
Run with -s to see the figures."""

from __future__ import annotations

import csv
import json
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from components import paths
from components.data.rows import write_rows
from components.data.store import write_store
from components.evaluation.report import write_label_issues
from components.review.server import create_app
from components.review.session import ReviewSession
from tests.unit.review.test_label_studio import REPO

N = 100_000
CLASSES = [f"class_{c:02d}" for c in range(40)]  # more than 10: the page's type-ahead mode


def _big_project(root: Path) -> Path:
    rng = np.random.default_rng(0)
    n_test = 1_000
    split = np.r_[np.zeros(N, np.int8), np.full(n_test, 2, np.int8)]
    files = tuple(f"images/{CLASSES[i % 40]}/photo_{i:06d}.jpg" for i in range(N + n_test))
    (root / paths.PREPARED).mkdir(parents=True)
    write_rows(root / paths.ROWS_CSV, split=split, source_row=np.arange(N + n_test), file=files)
    write_store(root / paths.STORE, rng.normal(size=(N + n_test, 6)).astype(np.float32))
    (root / paths.DATA_MANIFEST).write_text(json.dumps({"name": "big", "classes": CLASSES}))
    given = rng.integers(0, 40, N)
    verified = np.zeros(N, bool)
    verified[rng.choice(N, 500, replace=False)] = True
    p_wrong = np.where(verified, 0.0, rng.uniform(size=N))
    write_label_issues(root / paths.LABEL_ISSUES, source_row=np.arange(N), file=files[:N], dataset_row=np.arange(N),
                       given=given, predicted=rng.integers(0, 40, N), p_label_wrong=p_wrong,
                       p_given_model=rng.uniform(size=N), classes=CLASSES, verified=verified, selected_by="validation")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    return root


def test_pages_of_a_100k_row_report(tmp_path, monkeypatch):
    root = _big_project(tmp_path)
    monkeypatch.chdir(root)
    report = paths.LABEL_ISSUES
    tracemalloc.start()
    with open(report, newline="") as handle:
        expected = list(csv.DictReader(handle))  # the test's own copy, to check pages against (not the server's)
    rows_cost = tracemalloc.get_traced_memory()[0]  # what holding the report's rows would cost
    tracemalloc.stop()
    size = report.stat().st_size

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    session = ReviewSession(root)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held -= before
    started = time.perf_counter()
    ReviewSession(root)  # timed without tracemalloc's overhead
    opened = time.perf_counter() - started
    index = session.report.nbytes()
    client = TestClient(create_app(session))

    def timed(method: str, url: str, **kw) -> tuple[float, dict]:
        started = time.perf_counter()
        response = client.request(method, url, **kw)
        assert response.status_code == 200, response.text
        return time.perf_counter() - started, response.json()

    first_s, first = timed("GET", "/api/items?limit=50")
    deep_s, deep = timed("GET", "/api/items?offset=99450&limit=50")
    verified_s, verified = timed("GET", "/api/items?status=verified&offset=450&limit=50")
    unverified = [r for r in expected if r["verified"] == "0"]
    assert first["total"] == N - 500 and deep["total"] == N - 500 and verified["total"] == 500
    for got, want in ((first["items"], unverified[:50]), (deep["items"], unverified[99450:99500]),
                      (verified["items"], expected[N - 50:])):
        assert [(i["source_row"], i["file"], i["given"], i["predicted"], i["p"]) for i in got] == [
            (int(r["source_row"]), r["file"], r["given_class"], r["predicted_class"], float(r["p_label_wrong"]))
            for r in want]
    decide_s, decided = timed("POST", "/api/corrections", json={"file": first["items"][0]["file"], "label": "class_07"})
    assert decided["item"]["verified"] and decided["progress"]["reviewed"] == 1
    assert (root / "corrections.csv").read_text().splitlines()[1] == f"{first['items'][0]['file']},class_07,1"
    again_s, _ = timed("POST", "/api/corrections", json={"file": first["items"][1]["file"], "label": ""})
    after_s, after = timed("GET", "/api/items?limit=1")
    assert after["items"][0]["source_row"] == first["items"][2]["source_row"] and after["total"] == N - 502

    print(f"\n100k-row report ({size / 2**20:.1f} MiB on disk): opened in {opened:.2f} s; index {index / 2**20:.2f} MiB "
          f"({index / N:.0f} B/row); session holds {held / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB, row table "
          f"and name lookups included; the rows as dicts would take {rows_cost / 2**20:.0f} MiB); page of 50: first {1000 * first_s:.0f} ms, at offset 99,450 "
          f"{1000 * deep_s:.0f} ms, verified {1000 * verified_s:.0f} ms; a decision {1000 * decide_s:.0f} ms (the first: "
          f"params.yaml named too), the next {1000 * again_s:.0f} ms, next page {1000 * after_s:.0f} ms")
    assert index < 50 * N  # a few numbers per row: never the rows themselves
    assert held < rows_cost / 4  # the row table and its lookups, never the report's rows
    assert max(first_s, deep_s, verified_s, decide_s, again_s, after_s) < 2.0  # generous: a loaded 2-core CI machine
