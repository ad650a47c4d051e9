"""The review page is one self-contained, escaped HTML file whose inline images really render in a browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from sklearn.datasets import load_digits

from components.review.page import write_review_page

CLASSES = [str(c) for c in range(10)]


def _rows(n: int, classes: list[str], seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    wrong = np.sort(rng.uniform(0.5, 1.0, n))[::-1]
    return [{"source_row": 1000 + i, "file": f"images/sample_{i}.png" if i % 2 else "",
             "given_class": classes[i % len(classes)], "predicted_class": classes[(i + 3) % len(classes)],
             "p_label_wrong": float(wrong[i]), "model_p_given_label": float(1 - wrong[i]) / 2,
             "verified": int(i % 5 == 0), "known_noisy": [None, 0, 1][i % 3]} for i in range(n)]


def _counts(rows: list[dict], classes: list[str]) -> dict[str, dict[str, int]]:
    return {c: {"train": 100, "flagged": 10, "shown": sum(r["given_class"] == c for r in rows)} for c in classes}


def _digits(n: int) -> np.ndarray:
    return (load_digits().images[:n] / 16.0)[:, None]  # (n, 1, 8, 8) floats in [0, 1]


def _write(tmp_path, rows, samples, classes, **kw):
    path = tmp_path / "review.html"
    write_review_page(path, rows=rows, samples=samples, classes=classes, class_counts=_counts(rows, classes),
                      title=kw.pop("title", "Flagged labels"), note=kw.pop("note", "a note"), **kw)
    return path, path.read_text()


def _assert_self_contained(text: str) -> None:
    for needle in ("http://", "https://", 'src="/', "src='/", "url("):
        assert needle not in text


def test_digit_images_page_is_self_contained_and_complete(tmp_path):
    rows = _rows(20, CLASSES)
    path, text = _write(tmp_path, rows, _digits(20), CLASSES)
    _assert_self_contained(text)
    assert text.count('<img src="data:image/png;base64,') == 20
    assert text.count('class="card"') == 20
    for row in rows:
        assert f"row {row['source_row']}" in text
        assert f'data-given="{row["given_class"]}" data-predicted="{row["predicted_class"]}"' in text
        if row["file"]:
            assert row["file"] in text
    for c in CLASSES:
        assert f'<option value="{c}">{c}</option>' in text
    assert text.count('<option value="">all</option>') == 2 and 'id="f-verified"' in text
    assert f"{100 * rows[0]['p_label_wrong']:.1f}%" in text
    assert "known noisy" in text and ">verified<" in text
    assert "document.body.dataset.images" in text
    assert not list(tmp_path.glob(".review.html.*"))  # atomic write leaves no temporary sibling


def test_feature_rows_and_escaping(tmp_path):
    classes = ["<script>alert(1)</script>", 'a "quoted" & <b>', "plain"]
    rows = _rows(6, classes)
    rows[1]["file"] = "<img src=x onerror=alert(2)>.csv"
    samples = np.random.default_rng(1).normal(size=(6, 20))
    path, text = _write(tmp_path, rows, samples, classes, title="<i>t</i>", note="<b>n</b>")
    _assert_self_contained(text)
    assert "<img" not in text and "x0=" in text and "…" in text
    assert "<script>alert" not in text and "<b>" not in text and "<i>t</i>" not in text and "onerror=alert(2)>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count(f'<option value="{"a &quot;quoted&quot; &amp; &lt;b&gt;"}">') == 2
    assert text.count("<script>") == 1  # only the page's own script
    for row in rows:
        assert f"row {row['source_row']}" in text


def test_rgb_uint8_images(tmp_path):
    samples = np.random.default_rng(2).integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    _, text = _write(tmp_path, _rows(4, CLASSES), samples, CLASSES)
    assert text.count('<img src="data:image/png;base64,') == 4


@pytest.mark.parametrize(
    "samples, rows, match",
    [
        (np.zeros((3, 1, 8, 8)), _rows(4, CLASSES), "4 rows but 3 samples"),
        (np.zeros((4, 2, 8, 8)), _rows(4, CLASSES), "shape"),
        (np.zeros((4, 8, 8)), _rows(4, CLASSES), "shape"),
        (np.zeros((1, 5)), [{"source_row": 0}], "lacks"),
        (np.zeros((1, 5)), [{**_rows(1, CLASSES)[0], "given_class": "nope"}], "not one of the classes"),
    ],
)
def test_invalid_inputs_raise(tmp_path, samples, rows, match):
    with pytest.raises(ValueError, match=match):
        write_review_page(tmp_path / "p.html", rows=rows, samples=samples, classes=CLASSES, class_counts={}, title="t")
    assert not (tmp_path / "p.html").exists()


def _chromium(*args: str, profile) -> subprocess.CompletedProcess:
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=3000", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_images_render_in_headless_chromium(tmp_path):
    if shutil.which("chromium") is None:
        if os.environ.get("LNLFLOW_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed but LNLFLOW_REQUIRE_CHROMIUM is set")
        pytest.skip("chromium is not installed (set LNLFLOW_REQUIRE_CHROMIUM to make this a failure)")
    n = 24
    rows = _rows(n, CLASSES)
    path, _ = _write(tmp_path, rows, _digits(n), CLASSES)
    dom = _chromium("--dump-dom", f"file://{path}", profile=tmp_path / "profile").stdout
    assert re.search(r'<body[^>]*data-images="(\d+/\d+)"', dom), dom[:2000]
    assert f'data-images="{n}/{n}"' in dom
    shot = tmp_path / "page.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,900", f"file://{path}", profile=tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # the filters: given class "3" and hide verified leave exactly the unverified cards of given class 3
    driver = ("<script>document.getElementById('f-given').value='3';document.getElementById('f-verified').checked=true;"
              "applyFilters();</script></body>")
    filtered = tmp_path / "filtered.html"
    filtered.write_text(path.read_text().replace("</body>", driver))
    dom = _chromium("--dump-dom", f"file://{filtered}", profile=tmp_path / "profile").stdout
    visible = re.findall(r'<div class="card" data-given="(\d)" data-predicted="\d" data-verified="(\d)">', dom)
    expected = [(r["given_class"], "0") for r in rows if r["given_class"] == "3" and not r["verified"]]
    assert visible == expected and expected
    assert f'<span id="n-shown">{len(expected)}</span>' in dom

    # "only verified" leaves exactly the verified cards, each marked
    driver = "<script>document.getElementById('f-only-verified').checked=true;applyFilters();</script></body>"
    filtered.write_text(path.read_text().replace("</body>", driver))
    dom = _chromium("--dump-dom", f"file://{filtered}", profile=tmp_path / "profile").stdout
    cards = re.findall(r'<div class="card"[^>]*data-verified="(\d)"( hidden="")?>.*?row (\d+)</div>', dom)
    visible = [int(row) for verified, hidden, row in cards if not hidden]
    assert visible == [r["source_row"] for r in rows if r["verified"]] and visible
    assert all(verified == "1" for verified, hidden, _ in cards if not hidden)
