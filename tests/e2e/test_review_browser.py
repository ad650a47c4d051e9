"""The review journey in real Chromium (Playwright on the system browser): `lnlflow review serve` on a digits
pipeline, labels corrected by key, click and type-ahead, every decision on disk before the next, undo, reload; then
`dvc repro` retrains from the noise stage on, `lnlflow track` logs the round, and the next report and both pages
show the rows as verified. Prints the time from a key press to its durable write (median and worst over 50) and
the keystrokes or clicks per label."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sklearn.datasets import load_digits

from tests.conftest import BIN, make_workspace, run, write_params
from tests.e2e.test_review import ran, report

pytestmark = pytest.mark.slow
TRUTH = load_digits().target


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = "chromium is not installed" if path is None else None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = missing or "the playwright package is not installed"
    if missing:
        if os.environ.get("LNLFLOW_REQUIRE_CHROMIUM"):
            pytest.fail(f"{missing} but LNLFLOW_REQUIRE_CHROMIUM is set")
        pytest.skip(f"{missing} (set LNLFLOW_REQUIRE_CHROMIUM to make this a failure)")
    return path


@contextlib.contextmanager
def serving(ws: Path):
    """`lnlflow review serve` (this checkout's, as `python -m`) on a free loopback port, stopped with Ctrl+C."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "components.cli", "review", "serve", "--port", str(port)], cwd=ws,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert f" at http://127.0.0.1:{port}/" in line, line + proc.stdout.read() if proc.poll() is not None else line
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest


@contextlib.contextmanager
def browser(chromium: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = chrome.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page
            assert not errors, errors
        finally:
            chrome.close()


def decided_rows(ws: Path) -> dict[int, str]:
    path = ws / "corrections.csv"
    text = path.read_text() if path.exists() else ""
    return {int(m[1]): m[2] for m in re.finditer(r"^(\d+),([^,\n]*),1$", text, flags=re.M)}


def wait_disk(ws: Path, row: int, present: bool = True, timeout: float = 15) -> float:
    """Seconds until corrections.csv on disk holds (or no longer holds) `row`, polled every millisecond."""
    started = time.perf_counter()
    while (row in decided_rows(ws)) != present:
        if time.perf_counter() - started > timeout:
            raise AssertionError(f"row {row} not {'written' if present else 'removed'} within {timeout} s")
        time.sleep(0.001)
    return time.perf_counter() - started


def current(page) -> tuple[int, str]:
    """The label the cursor is on, once it is one still to decide (at the end of a page: once the next is in)."""
    page.wait_for_selector(".card.current:not(.decided)")
    card = page.locator(".card.current")
    return int(card.get_attribute("data-row")), card.locator(".given-class").inner_text()


def open_page(page, url: str, status: str = "unreviewed") -> None:
    page.goto(url + ("?status=verified" if status == "verified" else ""))
    page.wait_for_selector(f"body[data-ready={status}]")


def test_review_journey_in_chromium(tmp_path, mlflow_db):
    chromium = _chromium()
    from playwright.sync_api import expect

    ws = make_workspace(tmp_path / "ws", git=False)
    write_params(ws, stage2={"epochs": 2, "method": "ce"})
    run(["dvc", "repro"], ws)
    params_before = (ws / "params.yaml").read_text()

    with serving(ws) as url, browser(chromium) as page:
        open_page(page, url)
        # 50 decisions by key, each timed from the key press to the row in corrections.csv on disk; then undone
        waits, rows = [], []
        for k in range(50):
            row, _ = current(page)
            started = time.perf_counter()
            page.keyboard.press("Enter" if k % 10 == 9 else str(TRUTH[row]))  # Enter: the given label is right
            wait_disk(ws, row)
            waits.append(time.perf_counter() - started)
            rows.append(row)
        assert len(set(rows)) == 50 and "corrections: corrections.csv" in (ws / "params.yaml").read_text()
        for row in reversed(rows):
            page.keyboard.press("Control+z")
            wait_disk(ws, row, present=False)
        assert decided_rows(ws) == {}
        page.wait_for_selector(f".card.current[data-row='{rows[0]}']")  # the cursor back on the first one undone

        # the journey: 20 labels corrected by click, key and type-ahead; right labels kept with Enter
        actions, changed, kept, mode = [], {}, [], 0
        while len(changed) < 20:
            row, given = current(page)
            truth = str(TRUTH[row])
            if truth == given:
                page.keyboard.press("Enter")
                kept.append(row)
                actions.append(1)
            elif mode % 3 == 0:
                page.locator(f".card.current .choices button[data-label='{truth}']").click()
                actions.append(1)
            elif mode % 3 == 1:
                page.keyboard.press(truth)
                actions.append(1)
            else:
                page.locator(".card.current .typeahead").click()
                page.keyboard.type(truth)
                page.keyboard.press("Enter")
                actions.append(3)
            if truth != given:
                changed[row] = truth
                mode += 1
            wait_disk(ws, row)
        assert decided_rows(ws) == {**changed, **{row: "" for row in kept}}
        reviewed = len(changed) + len(kept)  # the page counts a decision once its answer is in, just after the disk
        expect(page.locator("#n-reviewed")).to_have_text(str(reviewed))  # no wait_for_function: the CSP forbids eval
        assert page.inner_text("#n-changed") == "20"

        page.reload()  # decisions kept: none of them is left to review, all are under Verified
        page.wait_for_selector("body[data-ready=unreviewed]")
        assert current(page)[0] not in changed and page.inner_text("#n-changed") == "20"
        assert page.inner_text("#n-reviewed") == str(reviewed)
        page.click("#tab-verified")
        page.wait_for_selector("body[data-ready=verified]")
        shown = {int(r) for r in page.locator(".card").evaluate_all("cards => cards.map(c => c.dataset.row)")}
        assert shown == set(changed) | set(kept)

    lines = [a for a, b in zip(params_before.splitlines(), (ws / "params.yaml").read_text().splitlines()) if a != b]
    assert lines == ["  corrections: null"]
    assert ran(run(["dvc", "repro"], ws).stdout) == ["inputs", "noise", "stage1", "stage2", "evaluate"]  # not data
    run([sys.executable, "-m", "components.cli", "track"], ws)
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_db)
    (logged,) = client.search_runs([client.get_experiment_by_name("lnlflow").experiment_id])
    assert logged.data.metrics["labels_corrected"] == 20
    assert logged.data.metrics["verified_rows"] == len(changed) + len(kept)
    verified = {int(r["source_row"]): r["given_class"] for r in report(ws) if r["verified"] == "1"}
    assert verified == {row: str(TRUTH[row]) for row in [*changed, *kept]}

    with serving(ws) as url, browser(chromium) as page:
        open_page(page, url, "verified")
        cards = page.locator(".card").evaluate_all("cs => cs.map(c => [c.dataset.row, c.dataset.verified])")
        assert {int(r) for r, _ in cards} == set(verified) and {v for _, v in cards} == {"1"}
        page.goto((ws / "reports/label_issues.html").as_uri())  # the static page: verified last, its filters work
        page.check("#f-only-verified")
        only = page.locator(".card:not([hidden])").evaluate_all("cs => cs.map(c => c.dataset.verified)")
        assert only == ["1"] * len(verified)
        page.uncheck("#f-only-verified")
        page.check("#f-verified")
        assert page.locator(".card:not([hidden])").count() == 200 and page.inner_text("#n-shown") == "200"

    median, worst = statistics.median(waits), max(waits)
    print(f"\nreview serve in Chromium: key press → row on disk over {len(waits)} decisions: median "
          f"{1000 * median:.1f} ms, worst {1000 * worst:.1f} ms; actions per label: {sum(actions) / len(actions):.2f} "
          f"({len(actions)} labels: key or click 1, type-ahead 3 = click + class + Enter)")
    assert worst < 5  # each decision is on disk long before a reviewer makes the next
