"""Verification and training plots (PNG), written next to ``metrics.json``.

matplotlib is imported lazily and only its Agg canvas is used (no pyplot
state, no display), so the library does not need matplotlib to score.
"""

import json
import os

import numpy as np
from scipy.special import ndtri
from speechbrain.utils.logger import get_logger

from speechbrain_moco.verification.metrics import compute_eer, det_curve
from speechbrain_moco.verification.score_files import read_scores

logger = get_logger(__name__)

# candidate DET ticks, the usual reading points first (see spaced_ticks)
DET_TICKS = (0.01, 0.1, 0.001, 0.05, 0.2, 0.4, 0.6, 0.8, 0.0001, 0.02, 0.005, 0.9, 0.0005, 0.002, 0.0002)


def _figure(n_cols=1, width=5.5, height=5.0):
    """A matplotlib Figure with an Agg canvas and ``n_cols`` axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols, height))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n_cols, i + 1) for i in range(n_cols)]
    return fig, axes


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    logger.info("Wrote %s", path)
    return path


def spaced_ticks(ticks, low, high, min_gap=0.06):
    """The ticks (probabilities, in order of preference) that fit in ``[low, high]`` (normal
    deviates) at least ``min_gap`` of the axis apart, sorted: their labels do not overlap
    on the crowded low end of a DET axis, and the preferred ones stay.

    Example
    -------
    >>> spaced_ticks([0.01, 0.1, 0.02, 0.0001, 0.0002], ndtri(0.0001), ndtri(0.95))
    [0.0001, 0.01, 0.1]
    """
    kept = []
    for t in ticks:
        x = ndtri(t)
        if low <= x <= high and all(abs(x - ndtri(k)) >= min_gap * (high - low) for k in kept):
            kept.append(t)
    return sorted(kept)


def plot_det(systems, path, title="DET", intervals=None):
    """DET curves of several systems on normal-deviate axes, one PNG.

    Arguments
    ---------
    systems : dict
        Name -> ``(scores, labels)`` (array-likes or tensors; labels 1/0).
    path : str
        Output PNG.
    title : str
        Figure title.
    intervals : dict, optional
        Name -> ``[low, high]`` 95 % interval of the EER (percent), shown in the legend.

    Returns
    -------
    str
        ``path``.
    """
    if not systems:
        raise ValueError("plot_det needs at least one system")
    fig, (ax,) = _figure()
    curves, smallest = {}, 1.0
    for name, (scores, labels) in systems.items():
        p_fa, p_miss = det_curve(scores, labels)
        eer, _ = compute_eer(scores, labels)
        curves[name] = (p_fa, p_miss, eer)
        positive = np.concatenate([p_fa[p_fa > 0], p_miss[p_miss > 0]])
        smallest = min(smallest, positive.min())
    low = min(max(smallest / 2, DET_TICKS[0]), 0.01)
    high = 0.95
    for name, (p_fa, p_miss, eer) in curves.items():
        x = ndtri(np.clip(p_fa, low, high))
        y = ndtri(np.clip(p_miss, low, high))
        ci = (intervals or {}).get(name)
        shown = f"EER {100 * eer:.2f}%" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        (line,) = ax.plot(x, y, label=f"{name} ({shown})")
        ax.plot(ndtri(np.clip(eer, low, high)), ndtri(np.clip(eer, low, high)), "o", color=line.get_color())
    ticks = spaced_ticks(DET_TICKS, ndtri(low), ndtri(high))
    labels = [f"{100 * t:g}" for t in ticks]
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ndtri(ticks), labels)
    lim = (ndtri(low), ndtri(high))
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.plot(lim, lim, ":", color="0.6", linewidth=0.8)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.set_title(title)
    ax.grid(True, linestyle=":", linewidth=0.6)
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def plot_score_hist(scores, labels, path, bins=50, title="Score distributions"):
    """Histograms of target and non-target scores (densities), one PNG."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    fig, (ax,) = _figure(width=6.0, height=4.0)
    edges = np.histogram_bin_edges(scores, bins=bins)
    ax.hist(
        scores[~labels], bins=edges, density=True, alpha=0.55, label=f"non-target ({int((~labels).sum())})"
    )
    ax.hist(scores[labels], bins=edges, density=True, alpha=0.55, label=f"target ({int(labels.sum())})")
    if labels.any() and (~labels).any():
        _, threshold = compute_eer(scores, labels)
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"EER threshold {threshold:.3f}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def read_history(history_path):
    """Rows of a ``history.jsonl`` file (one JSON object per line)."""
    with open(history_path, encoding="utf-8") as fin:
        return [json.loads(line) for line in fin if line.strip()]


def plot_training_curves(history_jsonl_path, path):
    """Loss and (K+1)-way accuracy per epoch (train / valid), and EER if logged.

    Reads the rows written by ``MoCoBrain.write_history`` (``epoch``,
    ``train_loss``, ``train_acc``, ``valid_loss``, ``valid_acc``); every key
    containing ``EER`` (any case) gets a third panel.
    """
    from matplotlib.ticker import MaxNLocator

    rows = read_history(history_jsonl_path)
    if not rows:
        raise ValueError(f"{history_jsonl_path} has no rows")
    eer_keys = sorted({k for row in rows for k in row if "eer" in k.lower()})
    panels = [
        ("loss", ("train_loss", "valid_loss"), "InfoNCE loss"),
        ("acc", ("train_acc", "valid_acc"), "(K+1)-way accuracy"),
    ]
    if eer_keys:
        panels.append(("eer", tuple(eer_keys), "EER (%)"))
    fig, axes = _figure(n_cols=len(panels), width=4.5, height=3.8)
    for ax, (_, keys, ylabel) in zip(axes, panels):
        for key in keys:
            points = [
                (row.get("epoch", i + 1), row[key]) for i, row in enumerate(rows) if row.get(key) is not None
            ]
            if points:
                x, y = zip(*points)
                ax.plot(x, y, marker="o", markersize=3, label=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, linestyle=":", linewidth=0.6)
        ax.legend(fontsize="small")
    fig.suptitle("train: augmented crops; valid: held-out utterances, not augmented", fontsize="small")
    return _save(fig, path)


def read_interval(eval_dir):
    """``EER_ci95`` of an evaluation folder's ``metrics.json``, or None."""
    path = os.path.join(eval_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("EER_ci95")


def plot_eval_folder(eval_dir, history_path=None, name="system", trials=None):
    """``det.png`` and ``score_hist.png`` from ``eval_dir/scores.txt`` (and
    ``training_curves.png`` when a history file is given); returns the paths. ``name``
    (the system) and ``trials`` (the trial list's name) title the plots."""
    _, _, scores, labels = read_scores(os.path.join(eval_dir, "scores.txt"))
    on = f" on {trials}" if trials else ""
    ci = read_interval(eval_dir)
    paths = [
        plot_det(
            {name: (scores, labels)},
            os.path.join(eval_dir, "det.png"),
            title=f"DET: {name}{on}",
            intervals={name: ci} if ci else None,
        ),
        plot_score_hist(
            scores, labels, os.path.join(eval_dir, "score_hist.png"), title=f"Scores: {name}{on}"
        ),
    ]
    if history_path is not None and os.path.isfile(history_path):
        paths.append(plot_training_curves(history_path, os.path.join(eval_dir, "training_curves.png")))
    return paths


def main(argv=None):
    """``python -m speechbrain_moco.plots --det OUT.png EVAL [EVAL ...]``: one DET
    plot of several evaluation folders (each with ``scores.txt``), named after
    the folders."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--det", required=True, help="output PNG")
    parser.add_argument("eval_dirs", nargs="+")
    args = parser.parse_args(argv)
    systems, intervals = {}, {}
    for folder in args.eval_dirs:
        _, _, scores, labels = read_scores(os.path.join(folder, "scores.txt"))
        name = os.path.basename(os.path.normpath(folder))
        systems[name] = (scores, labels)
        intervals[name] = read_interval(folder)
    return plot_det(systems, args.det, intervals={k: v for k, v in intervals.items() if v})


if __name__ == "__main__":
    main()
