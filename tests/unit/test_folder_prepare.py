"""Unit tests for data_prep.folder_prepare."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data_prep.folder_prepare import prepare_folder, split_valid
from speechbrain_moco.dataio import read_manifest

SR = 16000


def _wav(root, rel, n, sr=SR, channels=1):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(n).uniform(-0.1, 0.1, (n, channels)).squeeze()
    soundfile.write(path, data, sr)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "data"
    for s in range(4):
        for u in range(5):
            _wav(root, f"spk{s}/sess/u{u}.wav", 1600 * (u + 1) + s)
    _wav(root, "spk0/stereo.flac", 3200, channels=2)
    _wav(root, "spk1/rate8k.wav", 800, sr=8000)
    (root / "spk1" / "broken.wav").write_bytes(b"not a wav at all")
    _wav(root, "spk2/empty.wav", 0)
    (root / "trials.txt").write_text(
        "1 spk3/sess/u0.wav spk3/sess/u1.wav\n\n"
        "0 spk3/sess/u0.wav spk2/sess/u4.wav\nspk3/sess/u2 spk2/sess/u1 nontarget\n"
    )
    return root


def test_prepare_rows(corpus, tmp_path):
    save = tmp_path / "save"
    out = prepare_folder(corpus, save, verification_file="trials.txt", valid_ratio=0.25)
    assert sorted(out) == ["data_root", "skipped", "test", "train", "trials", "valid"]
    assert out["data_root"] == str(corpus) and out["trials"] == str(corpus / "trials.txt")
    train, valid = read_manifest(out["train"]), read_manifest(out["valid"])
    test = read_manifest(out["test"])
    # spk2 and spk3 are trial speakers: excluded from train/valid.
    assert {r["spk_id"] for r in train + valid} == {"spk0", "spk1"}
    ids = {r["ID"] for r in train + valid}
    assert len(ids) == 11 and "spk0/stereo" in ids  # 2x5 + stereo
    assert len(valid) == 3  # round(0.25 * 11)
    assert not ids & {r["ID"] for r in test}
    assert [r["ID"] for r in test] == [
        "spk2/sess/u1", "spk2/sess/u4", "spk3/sess/u0", "spk3/sess/u1", "spk3/sess/u2"
    ]  # fmt: skip
    for r in train + valid + test:
        spk, _, u = r["ID"].partition("/")
        assert r["spk_id"] == spk and r["start"] == 0
        assert r["wav"].startswith("$data_root/" + r["ID"])
        assert r["duration"] == pytest.approx(r["stop"] / SR)
        if "sess" in r["ID"]:
            assert r["stop"] == 1600 * (int(u[-1]) + 1) + int(spk[-1])
    skipped = dict(line.split("\t") for line in Path(out["skipped"]).read_text().splitlines())
    assert sorted(skipped) == ["spk1/broken.wav", "spk1/rate8k.wav", "spk2/empty.wav"]
    assert "8000" in skipped["spk1/rate8k.wav"] and "0 frames" in skipped["spk2/empty.wav"]
    opts = json.loads((save / "prepare_options.json").read_text())
    assert opts["data_folder"] == str(corpus) and opts["valid_ratio"] == 0.25


def test_no_trials_and_skip_prep(corpus, tmp_path):
    out = prepare_folder(corpus, tmp_path / "s", valid_ratio=0.05)
    assert "test" not in out and not os.path.exists(tmp_path / "s" / "test.csv")
    rows = read_manifest(out["train"]) + read_manifest(out["valid"])
    assert len(rows) == 21 and len(read_manifest(out["valid"])) == 1
    out2 = prepare_folder(corpus, tmp_path / "t", skip_prep=True)
    assert not os.path.exists(out2["train"])


def test_skip_on_rerun_and_redo(corpus, tmp_path):
    save = tmp_path / "save"
    out = prepare_folder(corpus, save, verification_file="trials.txt")
    mtime = os.stat(out["train"]).st_mtime_ns
    os.utime(out["train"], ns=(mtime - 10**9, mtime - 10**9))
    prepare_folder(corpus, save, verification_file="trials.txt")
    assert os.stat(out["train"]).st_mtime_ns == mtime - 10**9  # skipped
    prepare_folder(corpus, save, verification_file="trials.txt", seed=7)
    assert os.stat(out["train"]).st_mtime_ns != mtime - 10**9  # redone
    os.remove(out["test"])
    prepare_folder(corpus, save, verification_file="trials.txt", seed=7)
    assert os.path.exists(out["test"])


def test_absolute_trials_and_valid_determinism(corpus, tmp_path):
    a = prepare_folder(corpus, tmp_path / "a", verification_file=str(corpus / "trials.txt"))
    b = prepare_folder(corpus, tmp_path / "b", verification_file="trials.txt")
    for key in ("valid", "test"):
        assert Path(a[key]).read_text() == Path(b[key]).read_text()


@pytest.mark.parametrize(
    "line, match",
    [("1 spk3/sess/u0.wav spk3/nope.wav", "nope.wav' names a file that does not exist"),
     ("0 spk3/sess/u0.wav spk1/broken.wav", "skipped"),
     ("1 spk3/sess/u0.wav", "malformed")],
)  # fmt: skip
def test_bad_trial(corpus, tmp_path, line, match):
    trials = tmp_path / "t.txt"
    trials.write_text(f"1 spk3/sess/u0.wav spk3/sess/u1.wav\n{line}\n")
    with pytest.raises(ValueError, match=f"t.txt:2: .*{match}"):
        prepare_folder(corpus, tmp_path / "s", verification_file=trials)


def test_split_valid():
    rows = [{"ID": str(i)} for i in range(3)]
    assert [len(x) for x in split_valid(rows, 0.01, 0)] == [2, 1]
    assert [len(x) for x in split_valid(rows, 0.0, 0)] == [3, 0]
    assert [len(x) for x in split_valid(rows, 1.0, 0)] == [1, 2]
    assert split_valid([], 0.5, 0) == ([], [])


def test_a_changed_corpus_is_prepared_again(corpus, tmp_path):
    save = tmp_path / "save"
    first = read_manifest(prepare_folder(corpus, save, valid_ratio=0.0)["train"])
    _wav(corpus, "spk9/new.wav", 1600)
    second = read_manifest(prepare_folder(corpus, save, valid_ratio=0.0)["train"])
    assert {r["ID"] for r in second} - {r["ID"] for r in first} == {"spk9/new"}
    mtime = (save / "train.csv").stat().st_mtime_ns
    prepare_folder(corpus, save, valid_ratio=0.0)  # unchanged: skipped
    assert (save / "train.csv").stat().st_mtime_ns == mtime


def test_an_empty_corpus_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "spk0").mkdir(parents=True)
    with pytest.raises(ValueError, match="no usable audio file"):
        prepare_folder(tmp_path / "empty", tmp_path / "save")
    with pytest.raises(FileNotFoundError, match="--data_folder is required"):
        prepare_folder(None, tmp_path / "save")
    with pytest.raises(FileNotFoundError, match="data_folder does not exist"):
        prepare_folder(tmp_path / "nope", tmp_path / "save")
