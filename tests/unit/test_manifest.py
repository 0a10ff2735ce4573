"""Unit tests for speechbrain_moco.manifest."""

import os

import pytest

from speechbrain_moco.dataio import (
    manifest_row,
    options_match,
    read_manifest,
    read_trials,
    save_options,
    trial_ids,
    utterance_id,
    write_manifest,
)


def test_utterance_id():
    assert utterance_id("spk01/u1.wav") == "spk01/u1"
    assert utterance_id("spk01/sess/u1.flac") == "spk01/sess/u1"
    assert utterance_id("spk01\\u1.wav") == "spk01/u1"
    assert utterance_id("spk01/u1") == "spk01/u1"


def test_manifest_roundtrip_and_speechbrain(tmp_path):
    from speechbrain.dataio.dataset import DynamicItemDataset

    rows = [
        manifest_row("s1/a.wav", "s1", 0, 16000, 16000),
        manifest_row("s2/b.wav", "s2", 800, 8800, 16000, uid="s2/b_seg"),
    ]
    path = tmp_path / "m.csv"
    write_manifest(rows, path)
    assert path.read_text().splitlines()[0] == "ID,duration,wav,start,stop,spk_id"
    back = read_manifest(path)
    assert back == rows
    assert back[1]["duration"] == 0.5
    assert read_manifest(path, data_root="/x")[0]["wav"] == "/x/s1/a.wav"
    ds = DynamicItemDataset.from_csv(str(path), replacements={"data_root": "/root"})
    ds.set_output_keys(["id", "wav"])
    assert ds[0]["wav"] == "/root/s1/a.wav"


def test_write_manifest_duplicate_id(tmp_path):
    row = manifest_row("s1/a.wav", "s1", 0, 10, 16000)
    with pytest.raises(ValueError, match="s1/a"):
        write_manifest([row, dict(row)], tmp_path / "m.csv")


def test_read_manifest_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ID,duration,wav,start,stop\na,1.0,x.wav,0,10\n")
    with pytest.raises(ValueError, match="missing column.*spk_id"):
        read_manifest(path)
    path.write_text("ID,duration,wav,start,stop,spk_id\na,1.0,x.wav,0,10,s\nb,one,x,0,10,s\n")
    with pytest.raises(ValueError, match=r"bad.csv:3"):
        read_manifest(path)
    path.write_text("ID,duration,wav,start,stop,spk_id\na,1.0,x.wav,0,10\n")
    with pytest.raises(ValueError, match=r"bad.csv:2"):
        read_manifest(path)


def test_options_skip_logic(tmp_path):
    out = tmp_path / "train.csv"
    opts = {"a": 1, "exts": (".wav",)}
    save_options(tmp_path, opts)
    assert not options_match(tmp_path, opts, [out])  # output missing
    out.write_text("x")
    assert options_match(tmp_path, opts, [out])  # tuple == saved list
    assert not options_match(tmp_path, {"a": 2, "exts": (".wav",)}, [out])
    os.remove(tmp_path / "prepare_options.json")
    assert not options_match(tmp_path, opts, [out])


def test_read_trials_both_formats(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_text("1 s1/a.wav s1/b.wav\n\n0 s1/a.wav s2/c.wav\ns1/a s1/b target\ns1/a s2/c nontarget\n")
    trials = read_trials(path)
    assert trials == [
        (1, "s1/a.wav", "s1/b.wav"),
        (0, "s1/a.wav", "s2/c.wav"),
        (1, "s1/a", "s1/b"),
        (0, "s1/a", "s2/c"),
    ]
    assert trial_ids(trials)[:2] == trial_ids(trials)[2:]


@pytest.mark.parametrize("bad", ["1 a.wav", "2 a.wav b.wav", "a b maybe", "1 a b c"])
def test_read_trials_malformed(tmp_path, bad):
    path = tmp_path / "trials.txt"
    path.write_text(f"1 a.wav b.wav\n\n{bad}\n")
    with pytest.raises(ValueError, match=r"trials.txt:3"):
        read_trials(path)
