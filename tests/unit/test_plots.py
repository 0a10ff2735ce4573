"""Plots write non-empty PNG files."""

import json
import pathlib

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from speechbrain_moco.verification import write_scores
from speechbrain_moco.verification.plots import (
    plot_det,
    plot_eval_folder,
    plot_score_hist,
    plot_training_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    data = pathlib.Path(path).read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


@pytest.fixture
def trials():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(100, dtype=int), np.zeros(300, dtype=int)]
    return rng.normal(labels * 2.0, 1.0), labels


def test_det_and_histogram(trials, tmp_path):
    scores, labels = trials
    det = plot_det(
        {
            "good": (scores, labels),
            "worse": (scores * 0.3 + np.random.default_rng(1).normal(size=400), labels),
        },
        str(tmp_path / "det.png"),
    )
    assert is_png(det)
    assert is_png(plot_score_hist(scores, labels, str(tmp_path / "hist.png")))
    with pytest.raises(ValueError):
        plot_det({}, str(tmp_path / "none.png"))


def test_training_curves_with_and_without_eer(tmp_path):
    rows = [
        {
            "epoch": e,
            "train_loss": 3.0 / e,
            "train_acc": 0.1 * e,
            "valid_loss": 3.2 / e,
            "valid_acc": 0.09 * e,
            "lr": 0.001,
        }
        for e in (1, 2, 3)
    ]
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert is_png(plot_training_curves(str(history), str(tmp_path / "curves.png")))
    rows[-1]["EER"] = 20.0
    history.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert is_png(plot_training_curves(str(history), str(tmp_path / "curves_eer.png")))


def test_eval_folder_plots_next_to_metrics(trials, tmp_path):
    scores, labels = trials
    write_scores(
        tmp_path / "scores.txt", [(int(lab), f"e{i}", f"t{i}") for i, lab in enumerate(labels)], scores
    )
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps({"epoch": 1, "train_loss": 1.0, "train_acc": 0.5}) + "\n")
    paths = plot_eval_folder(str(tmp_path), str(history))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["det.png", "score_hist.png", "training_curves.png"]
    assert all(is_png(p) for p in paths)
