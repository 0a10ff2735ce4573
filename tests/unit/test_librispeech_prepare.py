"""Unit tests for data_prep.librispeech_prepare on a miniature LibriSpeech tree."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data_prep.librispeech_prepare import prepare_librispeech, sample_trials
from speechbrain_moco.dataio import read_manifest, read_trials, trial_manifest

SR = 16000
SUBSETS = {
    "train-clean-100": {"19": "198", "26": "495", "32": "21625", "39": "121914", "40": "222", "60": "121082"},
    "test-clean": {"1089": "134686", "121": "121726", "1284": "1180"},
}


def _n(uid):
    return 3200 + 160 * (sum(map(ord, uid)) % 19)


@pytest.fixture
def libri(tmp_path):
    root = tmp_path / "LibriSpeech"
    for subset, spks in SUBSETS.items():
        for spk, chapter in spks.items():
            folder = root / subset / spk / chapter
            folder.mkdir(parents=True)
            (folder / f"{spk}-{chapter}.trans.txt").write_text("ignored\n")
            for u in range(4):
                uid = f"{spk}-{chapter}-{u:04d}"
                data = np.random.default_rng(_n(uid)).uniform(-0.1, 0.1, _n(uid))
                soundfile.write(folder / f"{uid}.flac", data, SR)
    return root


def _uid(subset, spk, u):
    chapter = SUBSETS[subset][spk]
    return f"{subset}/{spk}/{chapter}/{spk}-{chapter}-{u:04d}"


def test_generated_trials(libri, tmp_path):
    out = prepare_librispeech(
        libri, tmp_path / "s", n_trial_speakers=2, trials_per_speaker=4, dev_ratio=0.1, seed=3
    )
    assert set(out) == {"train", "dev", "skipped", "enrol", "test", "trials", "data_root"}
    trials = read_trials(out["trials"])
    assert len(trials) == 8 and sum(t[0] for t in trials) == 4
    trial_spks = {name.split("/")[1] for t in trials for name in t[1:]}
    assert len(trial_spks) == 2
    for label, enrol, test in trials:
        assert enrol.startswith("train-clean-100/") and enrol.endswith(".flac")
        assert (enrol.split("/")[1] == test.split("/")[1]) == bool(label) and enrol != test
    train, dev = read_manifest(out["train"]), read_manifest(out["dev"])
    assert len(dev) == 2  # round(0.1 * 16)
    expected = {
        _uid("train-clean-100", s, u)
        for s in SUBSETS["train-clean-100"]
        if s not in trial_spks
        for u in range(4)
    }
    assert {r["ID"] for r in train + dev} == expected
    for r in train + dev:
        assert r["wav"] == f"$data_root/{r['ID']}.flac" and r["spk_id"] == r["ID"].split("/")[1]
        assert (r["start"], r["stop"], r["duration"]) == (
            0,
            _n(r["ID"].split("/")[-1]),
            _n(r["ID"].split("/")[-1]) / SR,
        )
    assert {r["spk_id"] for r in read_manifest(out["enrol"]) + read_manifest(out["test"])} == trial_spks
    # Same seed, same trials; the scoring stage reads them with data_folder = the root.
    again = prepare_librispeech(
        libri, tmp_path / "t", n_trial_speakers=2, trials_per_speaker=4, dev_ratio=0.1, seed=3
    )
    assert Path(again["trials"]).read_text() == Path(out["trials"]).read_text()
    assert len(
        read_manifest(trial_manifest(trials, str(libri), str(tmp_path / "u.csv"), out["trials"]))
    ) == len({u for t in trials for u in t[1:]})
    opts = json.loads((tmp_path / "s" / "prepare_options.json").read_text())
    assert opts["n_trial_speakers"] == 2 and opts["subsets"] == ["train-clean-100"]


def test_trial_subsets_and_given_list(libri, tmp_path):
    out = prepare_librispeech(
        libri,
        tmp_path / "s",
        trial_subsets=("test-clean",),
        n_trial_speakers=3,
        trials_per_speaker=2,
        splits=("train",),
    )
    assert {r["spk_id"] for r in read_manifest(out["train"])} == set(SUBSETS["train-clean-100"])
    assert {t[1].split("/")[0] for t in read_trials(out["trials"])} == {"test-clean"}
    trials = tmp_path / "kaldi.txt"
    trials.write_text(
        f"{_uid('test-clean', '121', 0)} {_uid('test-clean', '121', 1)} target\n"
        f"{_uid('test-clean', '121', 0)} {_uid('train-clean-100', '19', 3)}.flac "
        "nontarget\n"
    )
    out = prepare_librispeech(
        libri,
        tmp_path / "k",
        subsets=("train-clean-100", "test-clean"),
        verification_file=str(trials),
        splits=("train",),
    )
    assert read_trials(out["trials"]) == [
        (1, _uid("test-clean", "121", 0) + ".flac", _uid("test-clean", "121", 1) + ".flac"),
        (0, _uid("test-clean", "121", 0) + ".flac", _uid("train-clean-100", "19", 3) + ".flac"),
    ]
    assert not {r["spk_id"] for r in read_manifest(out["train"])} & {"121", "19"}
    assert len(read_manifest(out["train"])) == 7 * 4


def test_bad_inputs(libri, tmp_path):
    with pytest.raises(FileNotFoundError, match="subset not found: .*train-other-500"):
        prepare_librispeech(libri, tmp_path / "s", subsets=("train-other-500",))
    with pytest.raises(ValueError, match="even"):
        prepare_librispeech(libri, tmp_path / "s", trials_per_speaker=3)
    with pytest.raises(ValueError, match="asked for 7, 6 available"):
        prepare_librispeech(libri, tmp_path / "s", n_trial_speakers=7)
    folder = libri / "train-clean-100" / "19" / "198"
    soundfile.write(folder / "19-198-0009.flac", np.zeros((1600, 2)), SR)
    soundfile.write(folder / "19-198-0010.flac", np.zeros(800), 8000)
    (folder / "19-198-0011.flac").write_bytes(b"")
    soundfile.write(libri / "train-clean-100" / "19" / "loose.flac", np.ones(800) * 0.1, SR)
    trials = tmp_path / "t.txt"
    trials.write_text(
        f"1 {_uid('train-clean-100', '26', 0)}.flac {_uid('train-clean-100', '26', 1)}.flac\n"
        "0 train-clean-100/19/198/19-198-0011.flac "
        f"{_uid('train-clean-100', '26', 1)}.flac\n"
    )
    with pytest.raises(
        ValueError,
        match=r"t.txt:2: 'train-clean-100/19/198/19-198-0011.flac' was "
        r"skipped \(unreadable: ",
    ):
        prepare_librispeech(libri, tmp_path / "s", verification_file=str(trials))
    out = prepare_librispeech(libri, tmp_path / "s", n_trial_speakers=2, trials_per_speaker=2)
    skipped = dict(line.split("\t") for line in Path(out["skipped"]).read_text().splitlines())
    assert skipped == {
        "train-clean-100/19/loose.flac": "not at <subset>/<speaker>/<chapter>/",
        "train-clean-100/19/198/19-198-0009.flac": "2 channels, expected 1",
        "train-clean-100/19/198/19-198-0010.flac": "sample rate 8000 Hz, expected 16000 Hz (not resampled)",
        "train-clean-100/19/198/19-198-0011.flac": skipped["train-clean-100/19/198/19-198-0011.flac"],
    }
    assert skipped["train-clean-100/19/198/19-198-0011.flac"].startswith("unreadable: ")


def test_make_trials_balanced_with_few_pairs():
    rows = [{"ID": f"s{s}/u{u}", "spk_id": f"s{s}"} for s in range(3) for u in range(2 + s)]
    trials = sample_trials(rows, 3, 6, seed=1)
    targets = [t for t in trials if t[0] == 1]
    assert len(trials) == 2 * len(targets) == 2 * (1 + 3 + 3)  # s0 has a single pair
    assert len(set(trials)) == len(trials)
    assert all(e.split("/")[0] == t.split("/")[0] for _, e, t in targets)
