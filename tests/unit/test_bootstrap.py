"""Bootstrap intervals of EER / minDCF, paired comparisons and all-pairs trial lists."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from speechbrain_moco.verification import bootstrap as B
from speechbrain_moco.verification.metrics import compute_eer, compute_min_dcf


def speaker_list(rng, n_spk, n_utt, d, spk_sd, shift=0.0):
    """Every pair of ``n_spk x n_utt`` utterances: target scores d + speaker effect +
    noise, non-target scores noise (+ ``shift`` on targets)."""
    names = [f"s{s}/u{u}" for s in range(n_spk) for u in range(n_utt)]
    pairs = list(itertools.combinations(range(len(names)), 2))
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    labels = (a // n_utt == b // n_utt).astype(int)
    effect = rng.normal(0, spk_sd, n_spk)[a // n_utt]
    scores = rng.normal(0, 1, len(pairs)) + labels * (d + shift + effect)
    return scores, labels, [names[i] for i in a], [names[i] for i in b]


def true_eer(d, spk_sd):
    """EER of targets N(d, 1 + spk_sd^2) against non-targets N(0, 1), in percent."""
    sd = np.sqrt(1 + spk_sd**2)
    t = brentq(lambda t: norm.cdf((t - d) / sd) - norm.sf(t), -10, 10)
    return 100 * norm.sf(t)


def test_speaker_interval_covers_a_known_eer_90_to_99_percent():
    # (191 of 200 here; with 24 speakers and a speaker effect of 0.6 the percentile interval
    # falls to about 91 %: few speakers and strong speaker effects make it a little short)
    rng = np.random.default_rng(0)
    d, spk_sd = 2.0, 0.3
    truth = true_eer(d, spk_sd)
    covered = 0
    for _ in range(200):
        scores, labels, e, t = speaker_list(rng, 40, 5, d, spk_sd)
        low, high = B.bootstrap_intervals(scores, labels, e, t, n_resamples=200, seed=1)["EER_ci95"]
        covered += low <= truth <= high
    assert 180 <= covered <= 198, covered


def test_trial_interval_covers_a_known_eer_without_speakers():
    rng = np.random.default_rng(1)
    d = 2.0
    truth = 100 * norm.cdf(-d / 2)
    covered = 0
    for _ in range(200):
        labels = rng.integers(0, 2, 1500)
        scores = rng.normal(0, 1, 1500) + d * labels
        ci = B.bootstrap_intervals(scores, labels, n_resamples=200, seed=2)
        assert ci["ci_method"] == "trial"
        covered += ci["EER_ci95"][0] <= truth <= ci["EER_ci95"][1]
    assert 180 <= covered <= 198, covered


def test_paired_interval_excludes_zero_for_a_shift_and_covers_it_for_equal_systems():
    rng = np.random.default_rng(2)
    scores, labels, e, t = speaker_list(rng, 30, 5, 2.0, 0.5)
    better = scores + labels * 1.0  # targets moved up: a lower EER
    d = B.compare_scores(scores, better, labels, e, t, n_resamples=300)
    assert d["verdict"] == "better" and d["difference_ci95"][1] < 0
    assert B.compare_scores(better, scores, labels, e, t, n_resamples=300)["verdict"] == "worse"
    covered = 0
    for _ in range(100):  # two systems of the same quality: independent noise, same effects
        base, labels, e, t = speaker_list(rng, 20, 5, 2.0, 0.5)
        other = base + rng.normal(0, 0.5, base.size)
        base = base + rng.normal(0, 0.5, base.size)
        low, high = B.compare_scores(base, other, labels, e, t, n_resamples=200)["difference_ci95"]
        covered += low <= 0 <= high
    assert covered >= 90, covered


def test_fast_pair_path_equals_weighting_every_trial(monkeypatch):
    rng = np.random.default_rng(3)
    scores, labels, e, t = speaker_list(rng, 12, 6, 2.0, 0.5)
    scores = np.round(scores, 2)  # ties
    resampler = B.Resampler(labels, e, t, 50, seed=4)
    fast = B.bootstrap_draws(scores, labels, resampler)
    monkeypatch.setattr(B, "GRID_MAX", 300)  # a grid: quantiles + the top, then the exact EER
    grid = B.bootstrap_draws(scores, labels, resampler)
    monkeypatch.setattr(B, "PAIR_GRID_MAX", 0)  # every trial weighted in blocks
    direct = B.bootstrap_draws(scores, labels, resampler)
    np.testing.assert_allclose(fast[0], direct[0], atol=1e-9)
    np.testing.assert_allclose(fast[1], direct[1], atol=1e-9)
    np.testing.assert_allclose(grid[0], direct[0], atol=1e-9)
    # an unweighted resample (every speaker once) is the plain EER / minDCF
    ones = B.Resampler(labels, e, t, 1, seed=0)
    ones.counts[:] = 1.0
    eer, dcf = B.bootstrap_draws(scores, labels, ones)
    assert eer[0] == pytest.approx(100 * compute_eer(scores, labels)[0])
    assert dcf[0] == pytest.approx(compute_min_dcf(scores, labels)[0])


def test_same_list_and_seed_give_the_same_resamples():
    rng = np.random.default_rng(5)
    scores, labels, e, t = speaker_list(rng, 10, 4, 2.0, 0.5)
    one = B.bootstrap_intervals(scores, labels, e, t, 100, seed=7)
    assert one == B.bootstrap_intervals(scores, labels, e, t, 100, seed=7)
    assert one != B.bootstrap_intervals(scores, labels, e, t, 100, seed=8)
    assert one["ci_units"] == 10 and one["ci_resamples"] == 100


def test_labels_must_match_the_resampler():
    r = B.Resampler([1, 0, 1, 0], ["a/1", "a/1", "b/1", "b/2"], ["a/2", "b/1", "b/2", "a/3"], 10)
    with pytest.raises(ValueError, match="labels are not those"):
        B.bootstrap_draws([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], r)


def test_pooled_difference_holds_seed_variation():
    rng = np.random.default_rng(6)
    # a tight speaker interval per seed, but seeds that disagree in sign: not resolved
    fold = {
        "eer_a": [5.0, 5.0, 5.0],
        "eer_b": [4.0, 6.2, 4.3],
        "draws_a": 5.0 + rng.normal(0, 0.05, (3, 400)),
        "draws_b": np.array([4.0, 6.2, 4.3])[:, None] + rng.normal(0, 0.05, (3, 400)),
    }
    d = B.pooled_difference([fold, fold])
    assert d["verdict"] == "not resolved" and d["n_folds"] == 2 and d["n_seeds"] == 3
    assert d["difference"] == pytest.approx((4.0 + 6.2 + 4.3) / 3 - 5.0)
    consistent = dict(fold, eer_b=[4.0, 4.1, 4.2], draws_b=4.1 + rng.normal(0, 0.05, (3, 400)))
    assert B.pooled_difference([consistent])["verdict"] == "better"
    with pytest.raises(ValueError, match="differ in shape"):
        B.pooled_difference([dict(fold, draws_b=fold["draws_b"][:2])])


def test_trials_all_holds_every_pair_of_the_test_half_once(tmp_path):
    from conftest import write_tone_corpus

    from data_prep.speaker_split import split_speakers
    from speechbrain_moco.dataio.trials import read_trials

    # 10 speakers in 4 groups of gender and age: 5 test speakers always hold a same-group pair
    corpus = write_tone_corpus(str(tmp_path / "c"), n_speakers=10, n_utts=4, seconds=0.2)
    with open(os.path.join(corpus, "speakers.tsv"), "w") as f:
        f.write("speaker\tgender\tage\n")
        f.writelines(f"spk{s}\t{'fm'[s % 2]}\t{[8, 30][s // 5]}\n" for s in range(10))
    for fold in (0, 1):
        info = split_speakers(corpus, tmp_path / f"f{fold}", 0.5, seed=0, trial_files=[], fold=fold)
        utts = sorted(f"{s}/u{u}.wav" for s in info["test_speakers"] for u in range(4))
        trials = read_trials(tmp_path / f"f{fold}" / "trials_all.txt")
        pairs = [frozenset((a, b)) for _, a, b in trials]
        assert len(pairs) == len(set(pairs)) == len(utts) * (len(utts) - 1) // 2
        assert set(pairs) == {frozenset(p) for p in itertools.combinations(utts, 2)}
        assert all(label == (a.split("/")[0] == b.split("/")[0]) for label, a, b in trials)
        hard = read_trials(tmp_path / f"f{fold}" / "trials_all_hard.txt")
        assert [t for t in hard if t[0] == 1] == [t for t in trials if t[0] == 1]
        for _, a, b in (t for t in hard if t[0] == 0):
            sa, sb = int(a.split("/")[0][3:]), int(b.split("/")[0][3:])
            assert sa % 2 == sb % 2 and sa // 5 == sb // 5  # same gender, same age group
        spk = [int(x[3:]) for x in info["test_speakers"]]
        n_same = sum(a % 2 == b % 2 and a // 5 == b // 5 for a, b in itertools.combinations(spk, 2))
        assert sum(1 for t in hard if t[0] == 0) == n_same * 16  # every such pair: 4 x 4 trials
    both = json.load(open(tmp_path / "f0" / "split.json")), json.load(open(tmp_path / "f1" / "split.json"))
    assert both[0]["test_speakers"] == both[1]["train_speakers"]


def test_compare_command_on_two_scored_folders(tmp_path):
    from speechbrain_moco.verification import write_scores

    rng = np.random.default_rng(8)
    scores, labels, e, t = speaker_list(rng, 15, 4, 1.5, 0.3)
    trials = list(zip(labels, e, t))
    for name, s in (("a", scores), ("b", scores + 2.0 * labels)):
        os.makedirs(tmp_path / name)
        order = rng.permutation(len(trials)) if name == "b" else np.arange(len(trials))  # any order
        write_scores(tmp_path / name / "scores.txt", [trials[i] for i in order], s[order])
    cmd = [sys.executable, "-m", "speechbrain_moco.compare", str(tmp_path / "a"), str(tmp_path / "b")]
    proc = subprocess.run(cmd + ["--json", str(tmp_path / "d.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.load(open(tmp_path / "d.json"))
    assert result["verdict"] == "better" and "verdict: B is better" in proc.stdout
    assert result["EER_A"] == pytest.approx(100 * compute_eer(scores, labels)[0])
    # B = A + 2 on target trials, aligned across the two orders: the largest difference is 2
    assert result["max_abs_score_difference"] == pytest.approx(2.0, abs=1e-5)
    assert "largest score difference, trial by trial: 2.00e+00" in proc.stdout
    os.makedirs(tmp_path / "c")
    write_scores(tmp_path / "c" / "scores.txt", trials[:-1], scores[:-1])
    proc = subprocess.run(cmd[:-1] + [str(tmp_path / "c")], capture_output=True, text=True)
    assert proc.returncode == 2 and "one trial list" in proc.stderr and "Traceback" not in proc.stderr
