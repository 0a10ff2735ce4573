"""Unit tests for data_prep.cnceleb_prepare on miniature CN-Celeb1/2 trees."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data_prep.cnceleb_prepare import prepare_cnceleb
from speechbrain_moco.dataio import read_manifest, read_trials, trial_manifest

SR = 16000


def _flac(path, n, sr=SR, silent=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(n).uniform(-0.1, 0.1, n) * (not silent)
    soundfile.write(path, data, sr, format="FLAC")


def _n(name):
    return 3200 + 160 * (sum(map(ord, name)) % 19)


TRAIN1 = {
    "id00000": ["singing-01-001", "speech-01-002"],
    "id00001": ["interview-02-001"],
    "id00800": ["vlog-01-001"],
    "id00801": ["drama-03-004"],
}  # last two: eval speakers
TRAIN2 = {"id10000": ["live_broadcast-01-001", "play-01-002"]}
ENROL = ["id00800-enroll", "id00801-enroll"]
TEST = ["id00800-singing-01-001", "id00801-speech-02-003", "id00801-vlog-01-007"]


@pytest.fixture
def cn(tmp_path):
    cn1, cn2 = tmp_path / "CN-Celeb_flac", tmp_path / "CN-Celeb2_flac"
    for root, spks in ((cn1, TRAIN1), (cn2, TRAIN2)):
        for spk, utts in spks.items():
            for utt in utts:
                _flac(root / "data" / spk / f"{utt}.flac", _n(spk + utt))
    for name in ENROL:
        _flac(cn1 / "eval" / "enroll" / f"{name}.flac", _n(name))
    for name in TEST:
        _flac(cn1 / "eval" / "test" / f"{name}.flac", _n(name))
    lists = cn1 / "eval" / "lists"
    lists.mkdir()
    (lists / "enroll.lst").write_text("".join(f"{e} enroll/{e}.flac\n" for e in ENROL))
    (lists / "test.lst").write_text("".join(f"test/{t}.flac\n" for t in TEST))
    (lists / "trials.lst").write_text(  # the official lists may say .wav for .flac files
        "id00800-enroll test/id00800-singing-01-001.wav 1\n"
        "id00800-enroll test/id00801-speech-02-003.wav 0\n"
        "id00801-enroll test/id00801-vlog-01-007.wav 1\n"
        "id00801-enroll test/id00800-singing-01-001.wav 0\n"
    )
    return cn1, cn2


def test_rows_eval_and_trials(cn, tmp_path):
    cn1, cn2 = cn
    out = prepare_cnceleb([cn1, cn2], tmp_path / "s", dev_ratio=0.2)
    assert set(out) == {"train", "dev", "skipped", "enrol", "test", "trials", "data_root"}
    train, dev = read_manifest(out["train"]), read_manifest(out["dev"])
    assert len(dev) == 1
    assert sorted(r["ID"] for r in train + dev) == [
        "id00000/singing-01-001",
        "id00000/speech-01-002",
        "id00001/interview-02-001",
        "id10000/live_broadcast-01-001",
        "id10000/play-01-002",
    ]  # id00800/id00801 excluded
    for r in train + dev:
        spk, utt = r["ID"].split("/")
        root = "CN-Celeb_flac" if spk < "id1" else "CN-Celeb2_flac"
        assert r["wav"] == f"$data_root/{root}/data/{r['ID']}.flac" and r["spk_id"] == spk
        assert (r["start"], r["stop"], r["duration"]) == (0, _n(spk + utt), _n(spk + utt) / SR)
    enrol, test = read_manifest(out["enrol"]), read_manifest(out["test"])
    assert [(r["ID"], r["spk_id"], r["stop"]) for r in enrol] == [
        (f"eval/enroll/{e}", e[:7], _n(e)) for e in ENROL
    ]
    assert [r["ID"] for r in test] == [f"eval/test/{t}" for t in TEST]
    assert test[0]["wav"] == f"$data_root/CN-Celeb_flac/eval/test/{TEST[0]}.flac"
    trials = read_trials(out["trials"])
    e0, e1 = (f"CN-Celeb_flac/eval/enroll/{e}.flac" for e in ENROL)
    t0, t1, t2 = (f"CN-Celeb_flac/eval/test/{t}.flac" for t in TEST)
    assert trials == [(1, e0, t0), (0, e0, t1), (1, e1, t2), (0, e1, t0)]
    # The scoring stage reads the trial file with data_folder = $data_root.
    rows = read_manifest(trial_manifest(trials, str(tmp_path), str(tmp_path / "t.csv"), out["trials"]))
    assert len(rows) == 5
    opts = json.loads((tmp_path / "s" / "prepare_options.json").read_text())
    assert opts["eval_root"] == str(cn1) and opts["data_root"] == str(tmp_path)


def test_cnceleb2_only_and_chunks(cn, tmp_path):
    out = prepare_cnceleb(cn[1], tmp_path / "s", splits=("train",), chunk_seconds=0.2)
    assert set(out) == {"train", "skipped", "data_root"}
    rows = read_manifest(out["train"])
    assert {r["ID"].rsplit("_", 2)[0] for r in rows} == {
        "id10000/live_broadcast-01-001",
        "id10000/play-01-002",
    }
    assert all(r["stop"] - r["start"] == 3200 and r["duration"] == 0.2 for r in rows)
    assert rows[0]["wav"] == "$data_root/data/id10000/live_broadcast-01-001.flac"


def test_bad_inputs(cn, tmp_path):
    cn1 = cn[0]
    _flac(cn1 / "data" / "id00001" / "silent-01-001.flac", 3200, silent=True)
    _flac(cn1 / "data" / "id00001" / "rate-01-001.flac", 3200, sr=8000)
    (cn1 / "data" / "id00001" / "corrupt-01-001.flac").write_bytes(b"fLaC garbage")
    out = prepare_cnceleb(cn1, tmp_path / "s", check_silence=True)
    skipped = dict(line.split("\t") for line in Path(out["skipped"]).read_text().splitlines())
    assert skipped["data/id00001/silent-01-001.flac"] == "all silent (peak amplitude 0)"
    assert skipped["data/id00001/rate-01-001.flac"].startswith("sample rate 8000 Hz")
    assert skipped["data/id00001/corrupt-01-001.flac"].startswith("unreadable: ")
    assert len(skipped) == 3
    lists = cn1 / "eval" / "lists"
    trials = (lists / "trials.lst").read_text()
    (lists / "trials.lst").write_text(trials + "id00801-enroll test/id00809-x-01-001.flac 0\n")
    with pytest.raises(
        ValueError,
        match=r"trials.lst:5: 'test/id00809-x-01-001.flac' names a "
        "file that does not exist",
    ):
        prepare_cnceleb(cn1, tmp_path / "s")
    (lists / "trials.lst").write_text(trials + "id00802-enroll test/id00800-singing-01-001 1\n")
    with pytest.raises(ValueError, match=r"trials.lst:5: enrolment 'id00802-enroll' is not in"):
        prepare_cnceleb(cn1, tmp_path / "s")
    (lists / "trials.lst").write_text("1 id00800-enroll test/id00800-singing-01-001.flac\n")
    with pytest.raises(ValueError, match=r"trials.lst:1: label 'test/id00800-singing-01-001.flac'"):
        prepare_cnceleb(cn1, tmp_path / "s")
    (lists / "trials.lst").write_text(trials)
    (lists / "enroll.lst").write_text(
        "id00800-enroll enroll/id00800-enroll.flac\nid00801-enroll enroll/id00801-missing.flac\n"
    )
    with pytest.raises(ValueError, match=r"enroll.lst:2: 'enroll/id00801-missing.flac' names a"):
        prepare_cnceleb(cn1, tmp_path / "s")


def test_custom_trial_list(cn, tmp_path):
    cn1 = cn[0]
    (cn1 / "eval" / "lists" / "core.lst").write_text("id00801-enroll test/id00801-vlog-01-007.flac 1\n")
    out = prepare_cnceleb(cn1, tmp_path / "s", verification_file="lists/core.lst")
    assert read_trials(out["trials"]) == [
        (1, "eval/enroll/id00801-enroll.flac", "eval/test/id00801-vlog-01-007.flac")
    ]
    assert [r["ID"] for r in read_manifest(out["enrol"])] == ["eval/enroll/id00801-enroll"]
    spks = {r["spk_id"] for r in read_manifest(out["train"]) + read_manifest(out["dev"])}
    assert spks == {"id00000", "id00001", "id00800"}  # only id00801 is a trial speaker
    with pytest.raises(FileNotFoundError, match="trial list not found: .*nope.lst"):
        prepare_cnceleb(cn1, tmp_path / "s", verification_file="lists/nope.lst")


def test_skip_and_redo(cn, tmp_path):
    cn1 = cn[0]
    out = prepare_cnceleb(cn1, tmp_path / "s")
    stamp = Path(out["train"]).stat().st_mtime_ns
    prepare_cnceleb(cn1, tmp_path / "s")
    assert Path(out["train"]).stat().st_mtime_ns == stamp
    prepare_cnceleb(cn1, tmp_path / "s", seed=7)
    assert Path(out["train"]).stat().st_mtime_ns != stamp
    assert json.loads((tmp_path / "s" / "prepare_options.json").read_text())["seed"] == 7
