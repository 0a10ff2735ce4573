"""Unit tests for data_prep.voxceleb_prepare on miniature VoxCeleb1/2 trees."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from data_prep import speaker_prep
from data_prep import voxceleb_prepare as vp
from data_prep.voxceleb_prepare import convert_m4a, prepare_voxceleb, voxceleb_id
from speechbrain_moco.dataio import read_manifest, read_trials, trial_manifest

SR = 16000


def _wav(path, n, sr=SR, channels=1, silent=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = np.random.default_rng(n).uniform(-0.1, 0.1, (n, channels)).squeeze(1 if channels == 1 else None)
    soundfile.write(path, data * (not silent), sr, format="WAV")


def _lengths(uid):
    """Deterministic length (samples) of an utterance, 0.2-0.5 s."""
    return 3200 + 160 * (sum(map(ord, uid)) % 19)


VOX1 = {
    "id10001": {"1zcIwhmdeo4": 2, "7w0IBEWc9Qw": 1},
    "id10002": {"C7k7C-PDvAA": 2},
    "id10270": {"x6uYqmx31kE": 2, "5r0dWxy17C8": 1},  # trial speakers
    "id10309": {"0cYFdtyWVds": 2},
}
VOX2 = {"id00012": {"21Uxsk56VDQ": 2}, "id00015": {"0fijmz4vTVU": 1}}


def _tree(root, speakers):
    for spk, videos in speakers.items():
        for video, n in videos.items():
            for u in range(1, n + 1):
                uid = f"{spk}/{video}/{u:05d}"
                _wav(str(root / "wav" / f"{uid}.wav"), _lengths(uid))


@pytest.fixture
def vox(tmp_path):
    vox1, vox2 = tmp_path / "vox1", tmp_path / "vox2" / "dev"
    _tree(vox1, VOX1)
    _tree(vox2, VOX2)
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "veri_test2.txt").write_text(
        "1 id10270/x6uYqmx31kE/00001.wav id10270/x6uYqmx31kE/00002.wav\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10309/0cYFdtyWVds/00001.wav\n"
    )
    (meta / "list_test_hard2.txt").write_text(  # Kaldi format, dash IDs
        "id10270-5r0dWxy17C8-00001 id10309-0cYFdtyWVds-00002 nontarget\n\n"
        "id10309-0cYFdtyWVds-00001 id10309-0cYFdtyWVds-00002 target\n"
    )
    return vox1, vox2, meta


def test_two_roots_rows_and_trials(vox, tmp_path, monkeypatch):
    vox1, vox2, meta = vox
    save = tmp_path / "save"
    lists = [str(meta / "veri_test2.txt"), str(meta / "list_test_hard2.txt")]
    monkeypatch.setattr(speaker_prep, "POOL_MIN_FILES", 1)  # probe in a process pool
    out = prepare_voxceleb([vox1, vox2], save, verification_file=lists, dev_ratio=0.25, num_workers=2)
    assert set(out) == {
        "train",
        "dev",
        "skipped",
        "enrol",
        "test",
        "trials_veri_test2",
        "data_root",
        "trials_list_test_hard2",
    }
    train, dev = read_manifest(out["train"]), read_manifest(out["dev"])
    expected = {
        f"{s}/{v}/{u:05d}"
        for corpus in (VOX1, VOX2)
        for s, vids in corpus.items()
        for v, n in vids.items()
        for u in range(1, n + 1)
        if s not in ("id10270", "id10309")
    }
    assert {r["ID"] for r in train + dev} == expected and len(dev) == 2  # round(0.25 * 8)
    for r in train + dev:
        prefix = "vox1" if r["spk_id"].startswith("id1") else "vox2/dev"
        assert r["wav"] == f"$data_root/{prefix}/wav/{r['ID']}.wav"
        assert r["spk_id"] == r["ID"].split("/")[0]
        assert (r["start"], r["stop"]) == (0, _lengths(r["ID"]))
        assert r["duration"] == pytest.approx(_lengths(r["ID"]) / SR)
    enrol = [r["ID"] for r in read_manifest(out["enrol"])]
    test = [r["ID"] for r in read_manifest(out["test"])]
    assert enrol == ["id10270/5r0dWxy17C8/00001", "id10270/x6uYqmx31kE/00001", "id10309/0cYFdtyWVds/00001"]
    assert test == ["id10270/x6uYqmx31kE/00002", "id10309/0cYFdtyWVds/00001", "id10309/0cYFdtyWVds/00002"]
    # Normalised lists: VoxCeleb format, paths relative to $data_root (= tmp_path).
    hard = read_trials(out["trials_list_test_hard2"])
    assert hard == [
        (0, "vox1/wav/id10270/5r0dWxy17C8/00001.wav", "vox1/wav/id10309/0cYFdtyWVds/00002.wav"),
        (1, "vox1/wav/id10309/0cYFdtyWVds/00001.wav", "vox1/wav/id10309/0cYFdtyWVds/00002.wav"),
    ]
    # ... which the scoring stage reads with data_folder = $data_root.
    rows = read_manifest(
        trial_manifest(
            read_trials(out["trials_veri_test2"]),
            str(tmp_path),
            str(tmp_path / "t.csv"),
            out["trials_veri_test2"],
        )
    )
    assert len(rows) == 3
    opts = json.loads((save / "prepare_options.json").read_text())
    assert opts["data_root"] == str(tmp_path) and opts["verification_file"] == lists
    assert Path(out["skipped"]).read_text() == ""


def test_skip_rerun_and_redo(vox, tmp_path, monkeypatch):
    vox1, _, meta = vox
    save = tmp_path / "save"
    out = prepare_voxceleb(vox1, save, verification_file=str(meta / "veri_test2.txt"))
    assert set(out) == {"train", "dev", "skipped", "enrol", "test", "trials_veri_test2", "data_root"}
    assert read_manifest(out["train"])[0]["wav"].startswith("$data_root/wav/id10001/")
    calls = []
    real = vp.probe_entries
    monkeypatch.setattr(vp, "probe_entries", lambda *a, **k: calls.append(1) or real(*a, **k))
    prepare_voxceleb(vox1, save, verification_file=str(meta / "veri_test2.txt"))
    assert calls == []  # same options, outputs present: skipped
    assert prepare_voxceleb(vox1, tmp_path / "x", skip_prep=True)["train"].endswith("train.csv")
    assert not os.path.exists(tmp_path / "x")
    prepare_voxceleb(vox1, save, verification_file=str(meta / "veri_test2.txt"), dev_ratio=0.5)
    assert calls == [1]
    assert len(read_manifest(out["dev"])) == 2  # round(0.5 * 5) (banker's rounding)
    assert json.loads((save / "prepare_options.json").read_text())["dev_ratio"] == 0.5


def test_chunks_and_splits(vox, tmp_path):
    vox1, _, meta = vox
    out = prepare_voxceleb(
        vox1,
        tmp_path / "c",
        verification_file=str(meta / "veri_test2.txt"),
        splits=("train",),
        chunk_seconds=0.1,
    )
    assert "dev" not in out and not os.path.exists(tmp_path / "c" / "dev.csv")
    train = read_manifest(out["train"])
    for uid in ("id10001/1zcIwhmdeo4/00001", "id10002/C7k7C-PDvAA/00002"):
        n = _lengths(uid) // 1600  # whole 0.1 s chunks, remainder dropped
        rows = [r for r in train if r["ID"].startswith(uid + "_")]
        assert [(r["ID"], r["start"], r["stop"], r["duration"]) for r in rows] == [
            (f"{uid}_{k * 1600}_{(k + 1) * 1600}", k * 1600, (k + 1) * 1600, 0.1) for k in range(n)
        ]
        assert all(r["wav"] == f"$data_root/wav/{uid}.wav" for r in rows)
    assert {r["ID"].rsplit("_", 2)[0] for r in train} == {
        "id10001/1zcIwhmdeo4/00001",
        "id10001/1zcIwhmdeo4/00002",
        "id10001/7w0IBEWc9Qw/00001",
        "id10002/C7k7C-PDvAA/00001",
        "id10002/C7k7C-PDvAA/00002",
    }
    assert all(r["stop"] - r["start"] == 1600 for r in train)
    assert all("_" not in r["ID"] for r in read_manifest(out["test"]))  # enrol/test stay whole
    with pytest.raises(ValueError, match="splits must be"):
        prepare_voxceleb(vox1, tmp_path / "d", splits=("train", "test"))


def test_bad_files_are_skipped_and_reported(vox, tmp_path):
    vox1 = vox[0]
    bad = vox1 / "wav" / "id10002" / "bad"
    _wav(str(bad / "00001.wav"), 1600, sr=8000)
    _wav(str(bad / "00002.wav"), 1600, channels=2)
    _wav(str(bad / "00003.wav"), 0)
    _wav(str(bad / "00004.wav"), 3200, silent=True)
    (bad / "00005.wav").write_bytes(b"RIFF not really a wav")
    _wav(str(vox1 / "wav" / "id10002" / "stray.wav"), 1600)
    reasons = {
        "00001": "sample rate 8000 Hz, expected 16000 Hz (not resampled)",
        "00002": "2 channels, expected 1",
        "00003": "0 frames (empty file)",
        "00005": "unreadable: ",
    }
    out = prepare_voxceleb(vox1, tmp_path / "s")
    skipped = dict(line.split("\t") for line in Path(out["skipped"]).read_text().splitlines())
    assert skipped.pop("wav/id10002/stray.wav") == "not at wav/<speaker>/<video>/<utterance>.wav"
    assert sorted(skipped) == [f"wav/id10002/bad/{k}.wav" for k in sorted(reasons)]
    for k, why in reasons.items():
        assert skipped[f"wav/id10002/bad/{k}.wav"].startswith(why)
    ids = {r["ID"] for r in read_manifest(out["train"]) + read_manifest(out["dev"])}
    assert "id10002/bad/00004" in ids and len(ids) == 11  # silence not checked by default
    out = prepare_voxceleb(vox1, tmp_path / "s", check_silence=True)  # options changed: redone
    skipped = Path(out["skipped"]).read_text()
    assert "wav/id10002/bad/00004.wav\tall silent (peak amplitude 0)" in skipped
    # A trial naming a skipped or a missing file: the list and line are named.
    trials = tmp_path / "t.txt"
    trials.write_text(
        "1 id10001/1zcIwhmdeo4/00001.wav id10001/1zcIwhmdeo4/00002.wav\n"
        "0 id10001/1zcIwhmdeo4/00001.wav id10002/bad/00001.wav\n"
    )
    with pytest.raises(
        ValueError,
        match=r"t.txt:2: 'id10002/bad/00001.wav' was skipped "
        r"\(sample rate 8000",
    ):
        prepare_voxceleb(vox1, tmp_path / "s", verification_file=str(trials))
    trials.write_text("\n1 id10001/1zcIwhmdeo4/00001.wav id10001/nope/00009.wav\n")
    with pytest.raises(
        ValueError,
        match=r"t.txt:2: 'id10001/nope/00009.wav' names a file that "
        "does not exist",
    ):
        prepare_voxceleb(vox1, tmp_path / "s", verification_file=str(trials))
    with pytest.raises(FileNotFoundError, match="trial list not found"):
        prepare_voxceleb(vox1, tmp_path / "s", verification_file="missing.txt")


def test_duplicate_ids_and_missing_layout(vox, tmp_path):
    vox1, vox2, _ = vox
    _wav(str(vox2 / "wav" / "id10001" / "1zcIwhmdeo4" / "00001.wav"), 1600)
    with pytest.raises(
        ValueError,
        match=r"duplicate utterance ID 'id10001/1zcIwhmdeo4/00001': "
        r"vox1/wav/.*00001.wav and vox2/dev/wav/.*00001.wav",
    ):
        prepare_voxceleb([vox1, vox2], tmp_path / "s")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither wav/"):
        prepare_voxceleb(tmp_path / "empty", tmp_path / "s")


def test_voxceleb_id():
    assert voxceleb_id("id10270-x6uYqmx31kE-00001") == "id10270/x6uYqmx31kE/00001"
    assert voxceleb_id("id10270/x6uYqmx31kE/00001.wav") == "id10270/x6uYqmx31kE/00001"
    assert voxceleb_id("spk-1") == "spk-1"


# m4a conversion -------------------------------------------------------------

FAKE_FFMPEG = """#!{python}
import shutil, sys
args = sys.argv[1:]
src, dst = args[args.index("-i") + 1], args[-1]
assert args[args.index("-f") + 1] == "wav" and dst.endswith(".wav.part"), args
if "broken" in src:
    sys.stderr.write("Invalid data found when processing input\\n")
    sys.exit(1)
shutil.copyfile(src, dst)
"""


@pytest.fixture
def fake_ffmpeg(tmp_path, monkeypatch):
    """An ``ffmpeg`` on PATH that copies (wav data named .m4a) and fails on 'broken'."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "ffmpeg"
    exe.write_text(FAKE_FFMPEG.format(python=sys.executable))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return exe


def _m4a_tree(root):
    for rel in (
        "id00012/21Uxsk56VDQ/00001",
        "id00012/21Uxsk56VDQ/00002",
        "id00015/0fijmz4vTVU/00001",
        "id00015/0fijmz4vTVU/broken",
    ):
        _wav(str(root / "aac" / f"{rel}.m4a"), _lengths(rel))


def test_convert_m4a_resumable_with_failures(tmp_path, fake_ffmpeg):
    _m4a_tree(tmp_path)
    src, dst = tmp_path / "aac", tmp_path / "wav"
    assert convert_m4a(src, dst, num_workers=2) == {"converted": 3, "existing": 0, "failed": 1}
    done = dst / "id00012" / "21Uxsk56VDQ" / "00001.wav"
    assert soundfile.info(done).frames == _lengths("id00012/21Uxsk56VDQ/00001")
    failures = (dst / "conversion_failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(f"{src}/id00015/0fijmz4vTVU/broken.m4a\t")
    assert "Invalid data found" in failures[0]
    assert not list(dst.rglob("*.part"))
    stamp = done.stat().st_mtime_ns
    assert convert_m4a(src, dst, num_workers=1) == {"converted": 0, "existing": 3, "failed": 1}
    assert done.stat().st_mtime_ns == stamp  # a finished file is never rewritten


def test_prepare_converts_vox2_aac(tmp_path, fake_ffmpeg):
    root = tmp_path / "vox2"
    _m4a_tree(root)
    out = prepare_voxceleb(root, tmp_path / "s", splits=("train",), num_workers=1)
    assert [r["ID"] for r in read_manifest(out["train"])] == [
        "id00012/21Uxsk56VDQ/00001",
        "id00012/21Uxsk56VDQ/00002",
        "id00015/0fijmz4vTVU/00001",
    ]
    assert (
        Path(out["skipped"])
        .read_text()
        .startswith(
            "aac/id00015/0fijmz4vTVU/broken.m4a\tm4a conversion failed: RuntimeError: ffmpeg: Invalid"
        )
    )


def test_no_converter_error(tmp_path, monkeypatch):
    _m4a_tree(tmp_path)
    monkeypatch.setattr(vp.shutil, "which", lambda name: None)
    monkeypatch.setattr(vp.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"apt-get install ffmpeg.*conda install"):
        convert_m4a(tmp_path / "aac", tmp_path / "wav")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_convert_real_m4a(tmp_path):
    wav = tmp_path / "x.wav"
    _wav(str(wav), 8000)
    m4a = tmp_path / "aac" / "id00012" / "abc" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True
    )
    assert convert_m4a(tmp_path / "aac", tmp_path / "wav") == {"converted": 1, "existing": 0, "failed": 0}
    info = soundfile.info(tmp_path / "wav" / "id00012" / "abc" / "00001.wav")
    assert (info.samplerate, info.channels) == (SR, 1) and abs(info.frames - 8000) < 2048
