"""`lnlflow review serve`'s JSON API (FastAPI TestClient): paging and status filter, decisions checked as the noise
stage checks the corrections CSV and written at once atomically, params.yaml named once, undo, the guards."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from components.review import corrections as corrections_module
from components.review.server import bind, create_app, is_loopback
from components.review.session import ReviewSession
from components.errors import LnlError
from tests.unit.review.test_health import HEALTH
from tests.unit.review.test_label_studio import REPO, _project

# _project's report, most doubtful first: (source_row, given class); source row 9 is verified; source row 1 is a
# training row the report does not list; source rows 3 and 4 are test rows
ORDER = [(7, "1"), (2, "3"), (5, "4"), (0, "0")]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def project(tmp_path, monkeypatch):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _client(root: Path, **kw) -> TestClient:
    return TestClient(create_app(ReviewSession(root), **kw))


def test_items_page_through_the_report_by_status(project):
    client = _client(project)
    first = client.get("/api/items", params={"limit": 2}).json()
    assert first["total"] == 4 and [(i["source_row"], i["given"]) for i in first["items"]] == ORDER[:2]
    item = first["items"][0]
    assert {k: item[k] for k in ("source_row", "file", "given", "predicted", "p", "verified")} == {
        "source_row": 7, "file": None, "given": "1", "predicted": "7", "p": 0.95, "verified": False}
    rest = client.get("/api/items", params={"offset": 2, "limit": 10}).json()["items"]
    assert [(i["source_row"], i["given"]) for i in rest] == ORDER[2:]
    verified = client.get("/api/items", params={"status": "verified"}).json()
    assert verified["total"] == 1 and verified["items"][0]["source_row"] == 9 and verified["items"][0]["verified"]
    assert client.get("/api/items", params={"status": "all"}).json()["total"] == 5
    png = client.get(f"/{item['sample']}")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/api/samples/6.png").status_code == 404  # a test row: not in the report
    for params, message in (({"status": "done"}, "status must be one of unreviewed, verified, all"),
                            ({"limit": 0}, "limit 1..500"), ({"offset": -1}, "offset must be 0 or more"),
                            ({"limit": "x"}, "limit: Input should be a valid integer")):
        response = client.get("/api/items", params=params)
        assert response.status_code == 400 and message in response.json()["error"]
        assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]


def test_decisions_are_written_at_once_and_params_named_once(project, monkeypatch):
    client = _client(project)
    params_before = (project / "params.yaml").read_text().splitlines()
    named = []
    real = corrections_module.save_corrections

    def spy(path, rows, key, **kw):
        named.append(kw.get("params") is not None)
        return real(path, rows, key, **kw)

    monkeypatch.setattr("components.review.session.save_corrections", spy)
    answer = client.post("/api/corrections", json={"source_row": 7, "label": "7"})
    assert answer.status_code == 200, answer.text
    item = answer.json()["item"]
    assert (item["source_row"], item["label"], item["changed"], item["verified"]) == (7, "7", True, True)
    assert _rows(project / "corrections.csv") == [{"source_row": "7", "label": "7", "trusted": "1"}]
    after = (project / "params.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(params_before, after) if a != b]
    assert len(after) == len(params_before) and len(changed) == 1 and "corrections: corrections.csv" in changed[0][1]
    client.post("/api/corrections", json={"source_row": "2", "label": ""})  # the given label (3) is right
    client.post("/api/corrections", json={"source_row": 5, "label": "4", "trusted": False})  # given again, unverified
    assert _rows(project / "corrections.csv") == [{"source_row": "7", "label": "7", "trusted": "1"},
                                                 {"source_row": "2", "label": "", "trusted": "1"},
                                                 {"source_row": "5", "label": "", "trusted": ""}]
    assert named == [True, False, False] and (project / "params.yaml").read_text().splitlines() == after
    progress = client.get("/api/progress").json()
    assert (progress["reviewed"], progress["of"], progress["changed"], progress["verified"]) == (2, 4, 1, 3)
    assert [i["source_row"] for i in client.get("/api/items").json()["items"]] == [5, 0]
    assert [i["source_row"] for i in client.get("/api/items", params={"status": "verified"}).json()["items"]] == [7, 2, 9]
    client.post("/api/corrections", json={"source_row": 1, "label": "2"})  # a training row off the report
    assert _rows(project / "corrections.csv")[-1] == {"source_row": "1", "label": "2", "trusted": "1"}
    assert not [p for p in project.iterdir() if p.name.startswith(".corrections.csv")]  # no temporary file left


@pytest.mark.parametrize("body, message", [
    ({"source_row": 99, "label": "1"}, "POST /api/corrections: source_row 99 is not a training or validation row of "
                                       "the source (rows 0..9); see reports/label_issues.csv"),
    ({"source_row": 3, "label": "1"}, "POST /api/corrections: source_row 3 is in the test split"),
    ({"source_row": "x", "label": "1"}, "POST /api/corrections: source_row must be a whole number, got 'x'"),
    ({"source_row": 7, "label": "seven"}, "POST /api/corrections: label 'seven' is not a class (0, 1, 2"),
    ({"source_row": 7, "label": "1", "trusted": "maybe"}, "trusted must be 1/0/true/false/yes/no or empty"),
    ({"source_row": 7, "file": "a.png", "label": "1"}, "name the sample by exactly one of source_row or file"),
    ({"label": "1"}, "name the sample by exactly one of source_row or file"),
    ({"source_row": 7, "lable": "1"}, "unknown field(s) lable"),
    ({"source_row": 7, "label": 3}, "label must be a class name"),
    ({"file": "a.png", "label": "1"}, "names samples by file, but this data source has no files; use source_row"),
    ([7, "1"], "send one JSON object"),
])
def test_a_bad_row_or_class_is_a_400_with_one_line_and_writes_nothing(project, body, message):
    client = _client(project)
    params = (project / "params.yaml").read_text()
    response = client.post("/api/corrections", json=body)
    assert response.status_code == 400 and list(response.json()) == ["error"]
    assert message in response.json()["error"] and "\n" not in response.json()["error"]
    assert not (project / "corrections.csv").exists() and (project / "params.yaml").read_text() == params


def test_undo_restores_the_row_as_it_was(project):
    (project / "corrections.csv").write_text("source_row,label,trusted\n0,5,\n")
    client = _client(project)
    client.post("/api/corrections", json={"source_row": 7, "label": "2"})
    client.post("/api/corrections", json={"source_row": 7, "label": "8"})
    client.post("/api/corrections", json={"source_row": 0, "label": "6"})
    assert client.get("/api/progress").json()["undo"] == "0"
    undone = client.delete("/api/corrections/0").json()
    assert undone["item"]["source_row"] == 0 and undone["progress"]["undo"] == "7"
    assert _rows(project / "corrections.csv") == [{"source_row": "0", "label": "5", "trusted": ""},
                                                 {"source_row": "7", "label": "8", "trusted": "1"}]
    assert client.delete("/api/corrections/7").json()["item"]["label"] == "2"
    assert client.delete("/api/corrections/7").json()["item"]["label"] is None
    assert _rows(project / "corrections.csv") == [{"source_row": "0", "label": "5", "trusted": ""}]
    assert [i["source_row"] for i in client.get("/api/items").json()["items"]] == [7, 2, 5, 0]
    missing = client.delete("/api/corrections/7")
    assert missing.status_code == 400 and "no decision on source_row 7 to undo" in missing.json()["error"]
    assert client.delete("/api/corrections/0").status_code == 200  # not this server's: the row is withdrawn
    assert _rows(project / "corrections.csv") == []


def test_confirming_a_relabelled_row_keeps_its_label(project):
    # round 1 relabelled source row 7 to 1 and the report now shows 1: "given is right" must keep 1 pinned
    (project / "corrections.csv").write_text("source_row,label,trusted\n7,1,\n2,,1\n")
    client = _client(project)
    client.post("/api/corrections", json={"source_row": 7, "label": ""})
    client.post("/api/corrections", json={"source_row": 2, "label": "3"})  # 3 is the given: kept as it was
    assert _rows(project / "corrections.csv") == [{"source_row": "7", "label": "1", "trusted": "1"},
                                                 {"source_row": "2", "label": "", "trusted": "1"}]


def test_a_failed_write_leaves_file_and_state_as_they_were(project, monkeypatch):
    client = _client(project)
    client.post("/api/corrections", json={"source_row": 7, "label": "2"})
    before = (project / "corrections.csv").read_bytes()

    def full(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr("components.io.os.replace", full)
    response = client.post("/api/corrections", json={"source_row": 2, "label": "5"})
    assert response.status_code == 500 and "No space left on device" in response.json()["error"]
    monkeypatch.undo()
    assert (project / "corrections.csv").read_bytes() == before
    assert not [p for p in project.iterdir() if p.name.startswith(".corrections.csv")]
    assert client.get("/api/progress").json()["reviewed"] == 1
    assert client.get("/api/items").json()["items"][0]["source_row"] == 2


def test_edits_on_disk_and_a_new_report_are_followed(project):
    client = _client(project)
    client.post("/api/corrections", json={"source_row": 7, "label": "2"})
    time.sleep(0.01)
    (project / "corrections.csv").write_text("source_row,label,trusted\n2,9,1\n")  # a hand edit
    assert [i["source_row"] for i in client.get("/api/items").json()["items"]] == [7, 5, 0]
    assert client.get("/api/progress").json()["undo"] is None  # the journal does not outlive the file
    (project / "corrections.csv").write_text("source_row,label,trusted\n4,9,1\n")
    response = client.get("/api/items")
    assert response.status_code == 400 and "line 2: source_row 4 is in the test split" in response.json()["error"]


def test_page_shows_classes_and_the_health_summary_when_eval_has_it(project):
    client = _client(project)
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert '"classes": ["0", "1"' in page.text and 'id="health"' not in page.text
    assert client.get("/static/review.js").text.startswith("// lnlflow review serve")
    (project / "metrics").mkdir()
    (project / "metrics/eval.json").write_text(json.dumps({"test_acc_selected": 0.9, "label_health": HEALTH}))
    page = client.get("/").text
    assert 'id="health"' in page and "38.2%" in page and "&lt;b&gt;dog&lt;/b&gt;" in page


def test_guards_token_host_origin_and_json(project):
    client = _client(project, token="s3cret", allowed_hosts=None)
    denied = client.get("/api/items")
    assert denied.status_code == 401 and "needs its token" in denied.json()["error"]
    assert client.get("/api/items", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/items", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    opened = client.get("/?token=s3cret")
    assert opened.status_code == 200 and "lnlflow_review_token" in opened.headers["set-cookie"]
    assert "httponly" in opened.headers["set-cookie"].lower()
    assert client.get("/api/items").status_code == 200  # the cookie now
    local = TestClient(create_app(ReviewSession(project), allowed_hosts={"127.0.0.1:8765"}),
                       base_url="http://127.0.0.1:8765")
    assert local.get("/api/progress").status_code == 200
    assert local.get("/api/progress", headers={"Host": "evil.example:8765"}).status_code == 400
    post = {"json": {"source_row": 7, "label": "2"}}
    assert local.post("/api/corrections", headers={"Origin": "http://evil.example"}, **post).status_code == 403
    assert local.post("/api/corrections", content=b'{"source_row": 7}',
                      headers={"Content-Type": "text/plain"}).status_code == 415
    assert not (project / "corrections.csv").exists()
    assert local.post("/api/corrections", headers={"Origin": "http://127.0.0.1:8765"}, **post).status_code == 200


def test_loopback_and_busy_port():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    first = bind("127.0.0.1", 0)
    try:
        with pytest.raises(LnlError, match=f"cannot listen on 127.0.0.1:{first.getsockname()[1]}"):
            bind("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


def test_serve_off_loopback_prints_a_token_url_and_refuses_requests_without_it(project):
    import urllib.error
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "components.cli", "review", "serve", "--host", "0.0.0.0",
                             "--port", "0"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert "review: serving the 5 labels of reports/label_issues.csv at http://" in line and "?token=" in line, line
        port, token = line.split(":")[-1].split("/")[0], line.strip().split("?token=")[1]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/progress", timeout=10)
        assert refused.value.code == 401
        ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/progress?token={token}", timeout=10)
        assert json.loads(ok.read())["of"] == 4
    finally:
        proc.terminate()
        proc.wait(timeout=20)
