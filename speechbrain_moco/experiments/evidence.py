"""Results that can tell systems apart: scored folders over folds and seeds, read once,
bootstrapped with shared speaker resamples, summarised per system and compared in pairs.

``Evidence`` holds, per trial list, the scored folders (``scores.txt``) of each system for
each ``(fold, seed)``. Every system scored on a list of a fold is resampled with the same
speakers (one :class:`~speechbrain_moco.verification.bootstrap.Resampler` per list and
fold), so two systems' draws are paired. A system is summarised by its mean EER / minDCF
over folds and seeds with an interval that holds the seed and the speaker variation
(:func:`~speechbrain_moco.verification.bootstrap.pooled_difference`); two systems are
compared seed by seed (a system without seeds, e.g. an untrained baseline, is the same for
every seed). A comparison names a winner only when its interval excludes 0.

Example
-------
>>> import os
>>> import numpy as np
>>> from speechbrain_moco.verification import write_scores
>>> root = getfixture("tmp_path")
>>> rng = np.random.default_rng(0)
>>> trials = [(int(i % 3 == 0), f"s{i % 9}/a{i}", f"s{(i + (i % 3 != 0)) % 9}/b{i}") for i in range(900)]
>>> labels = np.array([t[0] for t in trials])
>>> ev = Evidence(n_resamples=200)
>>> for system, gap in (("a", 1.0), ("b", 3.0)):
...     for seed in (1, 2, 3):
...         folder = root / f"{system}{seed}"
...         os.makedirs(folder)
...         write_scores(folder / "scores.txt", trials, gap * labels + rng.normal(0, 1, 900))
...         ev.add(system, "trials", 0, seed, folder)
>>> ev.summary("b", "trials")["n_runs"], ev.compare("a", "b", "trials")["verdict"]
(3, 'better')
"""

import numpy as np

from speechbrain_moco.verification.bootstrap import (
    Resampler,
    bootstrap_draws,
    pooled_difference,
    pooled_interval,
)
from speechbrain_moco.verification.metrics import compute_eer, compute_min_dcf
from speechbrain_moco.verification.score_files import read_scores


class Evidence:
    """Scored folders of systems over trial lists, folds and seeds (see the module).

    Arguments
    ---------
    n_resamples : int
        Speaker resamples per list and fold.
    seed : int
        Seed of the resamples (and of the seed redraw).
    """

    def __init__(self, n_resamples=1000, seed=0):
        self.n_resamples, self.seed = int(n_resamples), int(seed)
        self.folders = {}  # system -> list -> {(fold, seed): folder}
        self._resamplers = {}  # (list, fold) -> (trial keys, Resampler)
        self._runs = {}  # folder -> (eer, dcf, eer draws, dcf draws)

    def add(self, system, list_name, fold, seed, folder):
        """Register the scored ``folder`` of ``system`` on ``list_name`` for ``(fold, seed)``
        (``seed`` None: a system that does not depend on a training seed)."""
        self.folders.setdefault(system, {}).setdefault(list_name, {})[(int(fold), seed)] = str(folder)

    def systems(self):
        """The registered systems, in the order they were added."""
        return list(self.folders)

    def _run(self, list_name, fold, folder):
        """EER, minDCF and their draws of one scored folder."""
        if folder in self._runs:
            return self._runs[folder]
        enrol, test, scores, labels = read_scores(f"{folder}/scores.txt")
        keys = list(zip(enrol, test))
        if (list_name, fold) not in self._resamplers:
            resampler = Resampler(labels, enrol, test, self.n_resamples, self.seed)
            self._resamplers[(list_name, fold)] = (keys, resampler)
        ref_keys, resampler = self._resamplers[(list_name, fold)]
        if keys != ref_keys:
            position = {k: i for i, k in enumerate(keys)}
            if len(position) != len(ref_keys) or any(k not in position for k in ref_keys):
                raise ValueError(
                    f"{folder}: not the trials of the other scorings of {list_name}, fold {fold}"
                )
            order = np.fromiter((position[k] for k in ref_keys), np.int64, len(ref_keys))
            scores, labels = scores[order], labels[order]
        eer_draws, dcf_draws = bootstrap_draws(scores, labels, resampler)
        run = (
            100.0 * compute_eer(scores, labels)[0],
            compute_min_dcf(scores, labels, 0.01)[0],
            eer_draws,
            dcf_draws,
        )
        self._runs[folder] = run
        return run

    def _by_fold(self, system, list_name):
        """``{fold: {seed: (eer, dcf, eer draws, dcf draws)}}`` of one system on one list."""
        runs = self.folders.get(system, {}).get(list_name)
        if not runs:
            raise KeyError(f"no scoring of {system} on {list_name}")
        out = {}
        for (fold, seed), folder in sorted(runs.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            out.setdefault(fold, {})[seed] = self._run(list_name, fold, folder)
        return out

    def summary(self, system, list_name):
        """Mean EER and minDCF(0.01) over folds and seeds, their 95 % intervals (speakers
        and seeds), the standard deviation of the EER over seeds, and every run's EER."""
        by_fold = self._by_fold(system, list_name)
        out = {"n_runs": sum(len(v) for v in by_fold.values()), "n_folds": len(by_fold)}
        for key, i, j in (("EER", 0, 2), ("minDCF_p0.01", 1, 3)):
            folds = [
                {"eer": [r[i] for r in runs.values()], "draws": np.stack([r[j] for r in runs.values()])}
                for runs in by_fold.values()
            ]
            pooled = pooled_interval(folds, self.seed)
            out[key] = pooled["EER"]
            out[f"{key}_ci95"] = pooled["EER_ci95"]
            out[f"{key}_std_seeds"] = pooled["EER_std_seeds"]
        out["runs"] = {
            f"fold{fold}/seed{seed}": round(r[0], 4)
            for fold, runs in by_fold.items()
            for seed, r in runs.items()
        }
        return out

    def compare(self, system_a, system_b, list_name):
        """B against A: mean EER difference (points), its 95 % interval over speakers and
        seeds, the half-width (what the protocol resolves) and the verdict. Seeds are paired
        by value; a system without seeds is paired with every seed of the other."""
        fa, fb = self._by_fold(system_a, list_name), self._by_fold(system_b, list_name)
        folds = []
        for fold in sorted(set(fa) & set(fb)):
            ra, rb = fa[fold], fb[fold]
            if None in ra and len(ra) == 1:
                ra = {s: ra[None] for s in rb}
            if None in rb and len(rb) == 1:
                rb = {s: rb[None] for s in ra}
            seeds = [s for s in ra if s in rb]
            if not seeds:
                continue
            folds.append(
                {
                    "eer_a": [ra[s][0] for s in seeds],
                    "eer_b": [rb[s][0] for s in seeds],
                    "draws_a": np.stack([ra[s][2] for s in seeds]),
                    "draws_b": np.stack([rb[s][2] for s in seeds]),
                }
            )
        if not folds:
            raise ValueError(f"{system_a} and {system_b} share no fold and seed on {list_name}")
        out = pooled_difference(folds, self.seed)
        out["relative_percent"] = 100.0 * out["difference"] / out["EER_A"] if out["EER_A"] else float("nan")
        return out


def summary_table(evidence, systems, lists, described=None):
    """Markdown: one row per system, per list its mean EER [95 % interval], the standard
    deviation over seeds, and minDCF(0.01) [interval]."""
    described = described or {}
    head = "| system | runs | " + " | ".join(
        f"EER % {n} [95 % CI] | sd seeds | minDCF0.01 {n} [95 % CI]" for n in lists
    )
    lines = [head + " |", "|" + "---|" * (2 + 3 * len(lists))]
    for system in systems:
        cells = []
        n_runs = None
        for n in lists:
            s = evidence.summary(system, n)
            n_runs = s["n_runs"]
            cells += [
                f"{s['EER']:.2f} [{s['EER_ci95'][0]:.2f}, {s['EER_ci95'][1]:.2f}]",
                f"{s['EER_std_seeds']:.2f}",
                f"{s['minDCF_p0.01']:.3f} [{s['minDCF_p0.01_ci95'][0]:.3f}, {s['minDCF_p0.01_ci95'][1]:.3f}]",
            ]
        name = f"{system}" + (f" ({described[system]})" if system in described else "")
        lines.append(f"| {name} | {n_runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_table(rows):
    """Markdown of comparisons: ``rows`` of ``(B, A, list, compare() dict)``. A difference
    inside its interval's half-width around 0 is "not resolved", never a winner."""
    lines = [
        "| B vs A | list | EER A | EER B | B - A (points) [95 % CI] | relative | resolvable +- | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b, a, list_name, d in rows:
        lines.append(
            f"| {b} vs {a} | {list_name} | {d['EER_A']:.2f} | {d['EER_B']:.2f} | "
            f"{d['difference']:+.2f} [{d['difference_ci95'][0]:+.2f}, {d['difference_ci95'][1]:+.2f}] | "
            f"{d['relative_percent']:+.1f} % | {d['half_width']:.2f} | {d['verdict']} |"
        )
    return "\n".join(lines)
