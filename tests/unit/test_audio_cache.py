"""Memory-mapped audio cache: the same crops as from disk, built once, bad files reported."""

import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from data_prep.folder_prepare import prepare_folder
from speechbrain_moco.dataio import AudioCache, TwoCrops, two_view_dataset


def test_cached_crops_equal_disk_crops(tone_corpus, tmp_path):
    prep = prepare_folder(tone_corpus, tmp_path / "m", valid_ratio=0.2, seed=0)
    cache = AudioCache.build([prep["train"], prep["valid"]], tone_corpus, tmp_path / "cache")
    n_rows = sum(len(open(p).read().splitlines()) - 1 for p in (prep["train"], prep["valid"]))
    assert len(cache) == n_rows
    for crop_s in (0.4, 1.5):  # shorter and longer than the 1 s utterances (wrap-around)
        disk, cached = TwoCrops(crop_s, 16000, seed=3), TwoCrops(crop_s, 16000, seed=3)
        cached.audio_cache = cache
        a = two_view_dataset(prep["train"], tone_corpus, disk)
        b = two_view_dataset(prep["train"], tone_corpus, cached)
        for i in range(len(a)):
            ra, rb = a[i], b[i]
            assert ra["id"] == rb["id"]
            assert torch.equal(ra["view1"], rb["view1"]) and torch.equal(ra["view2"], rb["view2"])


def test_cache_is_reused_and_rebuilt_when_the_manifest_changes(tone_corpus, tmp_path):
    prep = prepare_folder(tone_corpus, tmp_path / "m", valid_ratio=0.0)
    AudioCache.build([prep["train"]], tone_corpus, tmp_path / "c")
    data = tmp_path / "c" / "audio.pcm16"
    first = data.stat().st_mtime_ns
    AudioCache.build([prep["train"]], tone_corpus, tmp_path / "c")
    assert data.stat().st_mtime_ns == first  # up to date: not rebuilt
    lines = open(prep["train"]).read().splitlines()
    with open(prep["train"], "w") as f:
        f.write("\n".join(lines[:3]) + "\n")
    assert len(AudioCache.build([prep["train"]], tone_corpus, tmp_path / "c")) == 2


def test_undecodable_file_is_left_out_and_counted(tone_corpus, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(tone_corpus, corpus)
    prep = prepare_folder(corpus, tmp_path / "m", valid_ratio=0.0)
    with open(corpus / "spk0" / "u0.wav", "wb") as f:  # corrupted after the prep
        f.write(b"not audio")
    cache = AudioCache.build([prep["train"]], corpus, tmp_path / "c")
    assert "spk0/u0" not in cache and "spk0/u1" in cache
    index = json.load(open(tmp_path / "c" / "index.json"))
    assert len(index["failed"]) == 1 and "spk0/u0" in index["failed"][0]


def test_pickled_cache_reopens_its_map_and_checks_bounds(tmp_path):
    sf.write(tmp_path / "a.wav", (np.arange(800) - 400).astype(np.int16), 16000)
    from speechbrain_moco.dataio import manifest_row, write_manifest

    write_manifest([manifest_row("a.wav", "s", 0, 800, 16000)], tmp_path / "m.csv")
    cache = AudioCache.build([tmp_path / "m.csv"], tmp_path, tmp_path / "c")
    clone = pickle.loads(pickle.dumps(cache))  # what a spawned loader worker gets
    assert clone._data is None
    assert (clone.crop("a", 10, 4) * 32768).tolist() == [-390.0, -389.0, -388.0, -387.0]
    with pytest.raises(ValueError, match="outside"):
        clone.crop("a", 790, 20)
    assert os.path.getsize(tmp_path / "c" / "audio.pcm16") == 800 * 2
