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


def test_eval_plots_name_the_system_and_the_trial_list(trials, tmp_path, monkeypatch):
    import speechbrain_moco.verification.plots as plots

    scores, labels = trials
    write_scores(tmp_path / "scores.txt", [(int(y), f"e{i}", f"t{i}") for i, y in enumerate(labels)], scores)
    seen = {}
    real_det, real_hist = plots.plot_det, plots.plot_score_hist
    monkeypatch.setattr(
        plots,
        "plot_det",
        lambda systems, path, title, intervals=None: (
            seen.update(det=(list(systems), title), ci=intervals) or real_det(systems, path, title, intervals)
        ),
    )
    monkeypatch.setattr(
        plots,
        "plot_score_hist",
        lambda s, y, path, title: seen.update(hist=title) or real_hist(s, y, path, title=title),
    )
    plots.plot_eval_folder(str(tmp_path), name="moco_ecapa/1986, cosine", trials="trials_hard.txt")
    assert seen["det"] == (["moco_ecapa/1986, cosine"], "DET: moco_ecapa/1986, cosine on trials_hard.txt")
    assert seen["hist"] == "Scores: moco_ecapa/1986, cosine on trials_hard.txt"
    assert seen["ci"] is None  # no metrics.json: no interval
    (tmp_path / "metrics.json").write_text('{"EER": 5.0, "EER_ci95": [3.5, 6.75]}')
    plots.plot_eval_folder(str(tmp_path), name="sys", trials="trials.txt")
    assert seen["ci"] == {"sys": [3.5, 6.75]}  # the legend shows the interval


def test_det_ticks_do_not_crowd():
    from scipy.special import ndtri

    from speechbrain_moco.verification.plots import DET_TICKS, spaced_ticks

    low, high = ndtri(0.0001), ndtri(0.95)
    ticks = spaced_ticks(DET_TICKS, low, high)
    gaps = np.diff(ndtri(np.array(ticks)))
    assert len(ticks) >= 6 and gaps.min() >= 0.06 * (high - low) and ticks == sorted(ticks)
    assert 0.01 in ticks and 0.1 in ticks  # the usual reading points survive
