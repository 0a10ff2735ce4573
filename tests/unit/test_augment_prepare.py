"""Unit tests for data_prep.augment_prepare (MUSAN, RIRS_NOISES, plain folders)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import SHARED_DATA

from data_prep.augment_prepare import prepare_noise, prepare_rir
from speechbrain_moco.dataio import AddNoiseBank, AddReverbFFT

SR = 16000


def _wav(path, n, sr=SR, channels=1, silent=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(n).uniform(-0.3, 0.3, (n, channels)) * (not silent)
    soundfile.write(path, data, sr)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _skipped(save_path):
    side = Path(str(save_path)[: -len(".csv")] + "_prep")
    text = (side / "skipped.txt").read_text()
    return dict(line.split("\t") for line in text.splitlines())


@pytest.fixture
def musan(tmp_path):
    root = tmp_path / "musan"
    _wav(root / "noise" / "free-sound" / "noise-free-sound-0000.wav", 8000)
    _wav(root / "noise" / "sound-bible" / "noise-sound-bible-0001.wav", 4000)
    _wav(root / "music" / "fma" / "music-fma-0003.wav", 5600, channels=2)
    _wav(root / "speech" / "librivox" / "speech-librivox-0000.wav", 4000)
    return root


def test_musan_types_rows_and_chunks(musan, tmp_path):
    path = prepare_noise(musan, tmp_path / "noise.csv")
    rows = _rows(path)
    assert list(rows[0]) == ["ID", "duration", "wav", "start", "stop", "channels"]
    assert [(r["ID"], float(r["duration"]), r["start"], r["stop"], r["channels"]) for r in rows] == [
        ("noise/free-sound/noise-free-sound-0000", 0.5, "0", "8000", "1"),
        ("noise/sound-bible/noise-sound-bible-0001", 0.25, "0", "4000", "1"),
        ("music/fma/music-fma-0003", 0.35, "0", "5600", "2"),
    ]
    assert rows[0]["wav"] == str(musan / "noise" / "free-sound" / "noise-free-sound-0000.wav")
    assert all(os.path.isabs(r["wav"]) for r in rows)
    speech = _rows(prepare_noise(musan, tmp_path / "speech.csv", types=("speech",)))
    assert [r["ID"] for r in speech] == ["speech/librivox/speech-librivox-0000"]
    chunks = _rows(prepare_noise(musan, tmp_path / "c.csv", chunk_seconds=0.2))
    assert [(r["ID"], r["start"], r["stop"]) for r in chunks][:3] == [
        ("noise/free-sound/noise-free-sound-0000_0_3200", "0", "3200"),
        ("noise/free-sound/noise-free-sound-0000_3200_6400", "3200", "6400"),
        ("noise/free-sound/noise-free-sound-0000_6400_8000", "6400", "8000"),  # remainder kept
    ]
    assert len(chunks) == 3 + 2 + 2
    noise = AddNoiseBank(csv_file=path, snr_low=5, snr_high=5)
    x = torch.sin(torch.arange(4000.0) / 7).repeat(2, 1)
    assert noise(x, torch.ones(2)).shape == x.shape and len(noise.bank) == 3
    os.rename(musan / "music", tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match="musan/music not found"):
        prepare_noise(musan, tmp_path / "noise.csv")
    with pytest.raises(ValueError, match="unknown MUSAN type"):
        prepare_noise(musan, tmp_path / "noise.csv", types=("noise", "babble"))


def test_skip_redo_and_bad_files(tmp_path):
    folder = tmp_path / "noises"
    _wav(folder / "good.wav", 4000)
    _wav(folder / "sub" / "good.flac", 4000)
    _wav(folder / "silent.wav", 4000, silent=True)
    _wav(folder / "rate8k.wav", 2000, sr=8000)
    _wav(folder / "empty.wav", 0)
    (folder / "corrupt.flac").write_bytes(b"fLaC\x00garbage")
    save = tmp_path / "out" / "noise.csv"
    path = prepare_noise(folder, save)
    assert [r["ID"] for r in _rows(path)] == ["good", "sub/good"]
    skipped = _skipped(save)
    assert skipped[str(folder / "silent.wav")] == "all silent (peak amplitude 0)"
    assert skipped[str(folder / "rate8k.wav")].startswith("sample rate 8000 Hz, expected 16000 Hz")
    assert skipped[str(folder / "empty.wav")] == "0 frames (empty file)"
    assert skipped[str(folder / "corrupt.flac")].startswith("unreadable: ")
    opts = json.loads((tmp_path / "out" / "noise_prep" / "prepare_options.json").read_text())
    assert opts["folder"] == str(folder) and opts["check_silence"] is True
    stamp = save.stat().st_mtime_ns
    prepare_noise(folder, save)
    assert save.stat().st_mtime_ns == stamp  # same options: skipped
    rows = _rows(prepare_noise(folder, save, allow_resample=True, check_silence=False))
    assert [r["ID"] for r in rows] == ["good", "rate8k", "silent", "sub/good"]
    assert rows[1]["duration"] == "0.25" and rows[1]["stop"] == "2000"
    _wav(folder / "good.flac", 4000)
    with pytest.raises(ValueError, match="duplicate ID 'good'"):
        prepare_noise(folder, save, check_silence=False)
    empty = tmp_path / "nothing"
    _wav(empty / "a.wav", 100, silent=True)
    with pytest.raises(ValueError, match="no usable audio"):
        prepare_noise(empty, tmp_path / "n.csv")
    assert prepare_noise(empty, tmp_path / "m.csv", skip_prep=True) == str(tmp_path / "m.csv")


def test_rirs_noises_layout(tmp_path):
    root = tmp_path / "RIRS_NOISES"
    sim = root / "simulated_rirs"
    _wav(sim / "smallroom" / "Room001" / "Room001-00001.wav", 1600)
    _wav(sim / "mediumroom" / "Room002" / "Room002-00003.wav", 2400)
    real = root / "real_rirs_isotropic_noises"
    _wav(real / "RVB2014_type1_rir_largeroom1_far_angla.wav", 3200, channels=2)
    _wav(real / "RVB2014_type1_noise_largeroom1_1.wav", 3200)
    _wav(real / "air_type1_air_binaural_stairway_1_1_90.wav", 2000)
    _wav(root / "pointsource_noises" / "noise-free-sound-0001.wav", 2000)
    path = prepare_rir(root, tmp_path / "rir.csv")
    ids = [r["ID"] for r in _rows(path)]
    assert ids == [
        "simulated_rirs/mediumroom/Room002/Room002-00003",
        "simulated_rirs/smallroom/Room001/Room001-00001",
        "real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_far_angla",
        "real_rirs_isotropic_noises/air_type1_air_binaural_stairway_1_1_90",
    ]
    (real / "rir_list").write_text(
        "--rir-id RVB2014_type1_rir_largeroom1_far_angla --room-id largeroom1 "
        "real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_far_angla.wav\n"
    )
    rows = _rows(prepare_rir(root, tmp_path / "real.csv", types=("real",)))
    assert [(r["ID"], r["channels"]) for r in rows] == [
        ("real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_far_angla", "2")
    ]
    (real / "rir_list").write_text("--rir-id x real_rirs_isotropic_noises/missing.wav\n")
    with pytest.raises(ValueError, match=r"rir_list:1: 'real_rirs_isotropic_noises/missing.wav'"):
        prepare_rir(root, tmp_path / "real.csv", types=("real",))
    reverb = AddReverbFFT(csv_file=path)
    x = torch.randn(2, 4000)
    assert reverb(x).shape == x.shape and reverb.rirs.shape[0] == 4


def test_shared_noise_and_rir(tmp_path):
    noise_dir, rir_dir = (os.path.join(SHARED_DATA, name) for name in ("noise", "rir"))
    if not (os.path.isdir(noise_dir) and os.path.isdir(rir_dir)):
        pytest.skip(f"shared noise/rir data not found under {SHARED_DATA}")
    noise = _rows(prepare_noise(noise_dir, tmp_path / "noise.csv", chunk_seconds=30.0))
    names = {r["ID"].split("/")[-1].rsplit("_", 2)[0] for r in noise}
    assert {"doing_the_dishes", "running_tap"} <= names
    assert all(float(r["duration"]) <= 30.0 and os.path.isfile(r["wav"]) for r in noise)
    rirs = _rows(prepare_rir(rir_dir, tmp_path / "rir.csv"))
    assert len(rirs) >= 5 and all(r["channels"] == "1" and r["start"] == "0" for r in rirs)
    assert "seminar_room_clap" in {r["ID"] for r in rirs}
