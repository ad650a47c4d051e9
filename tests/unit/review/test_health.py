"""The label-health summary on the review pages: rendered from eval.json's `label_health` block when it is there,
escaped, and skipped quietly when it is absent or not of the agreed shape."""

from __future__ import annotations

import numpy as np
import pytest

from components.review.health import health_html
from components.review.page import write_review_page

HEALTH = {
    "estimated_noise_rate": 0.382,
    "estimated_noise_rate_interval": [0.36, 0.405],
    "per_class": [{"class": "cat", "n": 120, "estimated_noise_rate": 0.25},
                  {"class": "<b>dog</b>", "n": 80, "estimated_noise_rate": 0.5}],
    "top_confusions": [{"given": "cat", "true": "<b>dog</b>", "share": 0.041}],
}


def test_summary_shows_rate_interval_classes_and_confusions():
    text = health_html(HEALTH)
    assert '<span class="rate">38.2%</span>' in text and "(interval 36.0%–40.5%)" in text
    assert "<td>cat</td><td>120</td><td>25.0%</td>" in text
    assert "<td>&lt;b&gt;dog&lt;/b&gt;</td><td>80</td><td>50.0%</td>" in text and "<b>dog</b>" not in text
    assert "given <b>cat</b>, truly <b>&lt;b&gt;dog&lt;/b&gt;</b>: 4.1%" in text


@pytest.mark.parametrize("block", [None, {}, [], "38%", {"estimated_noise_rate": "0.4"},
                                   {"estimated_noise_rate": 1.5}, {"estimated_noise_rate": float("nan")},
                                   {"estimated_noise_rate": True}])
def test_absent_or_malformed_block_renders_nothing(block):
    assert health_html(block) == ""


def test_optional_parts_are_dropped_one_by_one():
    text = health_html({"estimated_noise_rate": 0.1, "estimated_noise_rate_interval": [0.2],
                        "per_class": [{"class": "a", "n": "many", "estimated_noise_rate": 0.1}],
                        "top_confusions": [{"given": "a", "share": 0.1}]})
    assert "10.0%" in text and "interval" not in text and "per class" not in text and "confused" not in text


def _page(tmp_path, health):
    rows = [{"source_row": i, "file": "", "given_class": "0", "predicted_class": "1", "p_label_wrong": 0.9,
             "model_p_given_label": 0.1, "verified": 0} for i in range(2)]
    path = tmp_path / "p.html"
    write_review_page(path, rows=rows, samples=np.zeros((2, 3)), classes=["0", "1"], class_counts={}, title="t",
                      health=health)
    return path.read_text()


def test_static_page_carries_the_summary_only_when_given(tmp_path):
    assert 'id="health"' in _page(tmp_path, HEALTH) and "38.2%" in _page(tmp_path, HEALTH)
    assert 'id="health"' not in _page(tmp_path, None)
