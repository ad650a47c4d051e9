"""`lnlflow summary` puts the label-health estimate beside the actual noise rate."""

from __future__ import annotations

from components import paths
from components.io import write_json
from components.summary import render

EVAL = {"method": "ido", "actual_noise_rate": 0.4003, "test_acc_selected": 0.95, "test_acc_last": 0.94,
        "test_acc_oracle": 0.96, "selected_epoch": 17, "noise_auc": 0.98, "noise_precision": 0.9, "noise_recall": 0.9,
        "flagged_labels": 500, "estimated_noise_rate": 0.3998,
        "label_health": {"estimated_noise_rate": 0.3998, "estimated_noise_rate_interval": [0.372, 0.4312],
                         "per_class": [{"class": "0", "n": 10, "estimated_noise_rate": 0.3}],
                         "top_confusions": [{"given": "3", "true": "1", "share": 0.0952},
                                            {"given": "9", "true": "3", "share": 0.05}]}}


def workspace(tmp_path, evaluation: dict):
    write_json(tmp_path / paths.EVAL_METRICS, evaluation)
    write_json(tmp_path / paths.NOISE_MANIFEST, {"dataset": "digits", "kind": "symmetric_exclusive",
                                                  "requested_rate": 0.4})
    return tmp_path


def test_summary_shows_the_estimate_its_interval_and_confusions(tmp_path):
    text = render(workspace(tmp_path, EVAL))
    assert ("  label health          39.98 % of the labels estimated wrong (95 % interval 37.20 % – 43.12 %; "
            "from the model's scores alone)") in text
    assert "given → true, share of the given class: 3 → 1 (9.52 %), 9 → 3 (5.00 %)" in text


def test_summary_of_an_older_eval_json_has_no_health_lines(tmp_path):
    old = {k: v for k, v in EVAL.items() if k not in ("label_health", "estimated_noise_rate")}
    assert "label health" not in render(workspace(tmp_path, old))
