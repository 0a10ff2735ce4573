"""Unit tests for data_prep.synthetic_corpus (tiny corpora)."""

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile

from data_prep.synthetic_corpus import generate_corpus
from data_prep.synthetic_voice import draw_speaker, synthesise
from speechbrain_moco.dataio import read_trials

SMALL = {"n_speakers": 6, "n_held_out": 3, "utts_per_speaker": 3, "min_dur": 0.4, "max_dur": 0.8}


def _files(root):
    return {
        os.path.relpath(os.path.join(d, f), root): Path(d, f).read_bytes()
        for d, _, fs in os.walk(root)
        for f in fs
    }


def test_layout_and_audio(tmp_path):
    info = generate_corpus(tmp_path, seed=3, **SMALL)
    wavs = sorted(p for p in _files(tmp_path) if p.endswith(".wav"))
    assert len(wavs) == 18 and wavs[0] == "spk000/utt000.wav"
    for rel in wavs:
        meta = soundfile.info(tmp_path / rel)
        assert (meta.samplerate, meta.channels, meta.subtype) == (16000, 1, "PCM_16")
        assert 0.4 * 16000 <= meta.frames <= 0.8 * 16000 + 1
        x, _ = soundfile.read(tmp_path / rel)
        assert 0.2 < np.abs(x).max() < 0.6 and x.std() > 0.01
    saved = json.loads((tmp_path / "corpus_info.json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert saved["held_out"] == ["spk003", "spk004", "spk005"]
    assert len(saved["speakers"]) == 6 and "vtl" in saved["speakers"]["spk000"]


def test_trials_held_out_balanced(tmp_path):
    generate_corpus(tmp_path, n_target_per_spk=2, **SMALL)
    trials = read_trials(tmp_path / "trials.txt")
    labels = Counter(t[0] for t in trials)
    assert labels[1] == labels[0] == 6
    pairs = set()
    for label, a, b in trials:
        assert a != b and os.path.exists(tmp_path / a) and os.path.exists(tmp_path / b)
        assert {a.split("/")[0], b.split("/")[0]} <= {"spk003", "spk004", "spk005"}
        assert label == (a.split("/")[0] == b.split("/")[0])
        assert frozenset((a, b)) not in pairs
        pairs.add(frozenset((a, b)))


def test_determinism_and_skip(tmp_path):
    a = _files(generate_corpus(tmp_path / "a", seed=1, **SMALL) and tmp_path / "a")
    b = _files(generate_corpus(tmp_path / "b", seed=1, **SMALL) and tmp_path / "b")
    c = _files(generate_corpus(tmp_path / "c", seed=2, **SMALL) and tmp_path / "c")
    assert a == b
    assert a["spk000/utt000.wav"] != c["spk000/utt000.wav"]
    wav = tmp_path / "a" / "spk000" / "utt000.wav"
    mtime = os.stat(wav).st_mtime_ns
    generate_corpus(tmp_path / "a", seed=1, **SMALL)
    assert os.stat(wav).st_mtime_ns == mtime  # same options: skipped
    generate_corpus(tmp_path / "a", seed=2, **SMALL)
    assert _files(tmp_path / "a") == c  # changed options: regenerated


def test_worker_processes_give_the_same_corpus(tmp_path):
    one = _files(generate_corpus(tmp_path / "one", seed=4, **SMALL) and tmp_path / "one")
    two = _files(generate_corpus(tmp_path / "two", seed=4, num_workers=2, **SMALL) and tmp_path / "two")
    assert one == two and len(one) > 3


def test_speaker_in_signal():
    """Two utterances of one speaker share f0 better than utterances of two speakers."""
    low = dict(draw_speaker(np.random.default_rng(0)), f0=90.0)
    high = dict(low, f0=240.0)
    spectra = []
    for spk, seed in [(low, 1), (low, 2), (high, 3)]:
        x = synthesise(spk, 1.0, 16000, np.random.default_rng(seed))
        spectra.append(np.log(np.abs(np.fft.rfft(x))[: 16000 // 2] + 1e-6))
    corr = np.corrcoef(spectra)
    assert corr[0, 1] > corr[0, 2]
