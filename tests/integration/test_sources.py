"""Several unlabelled sources with weights; unreadable audio skipped and reported."""

import csv
import json
import os

import pytest
from conftest import TINY, run, write_tone_corpus
from hyperpyyaml import load_hyperpyyaml
from test_moco_brain import YAML, build, fit

from data_prep.folder_prepare import prepare_folder


def test_two_sources_are_drawn_by_weight(tone_corpus, tmp_path):
    second = write_tone_corpus(str(tmp_path / "second"), n_speakers=4, n_utts=8, seed=3)
    out = tmp_path / "out"
    run(
        [
            "recipes/Folder/MoCo/train_moco.py",
            "recipes/Folder/MoCo/hparams/moco.yaml",
            f"--data_folder={tone_corpus}",
            f"--output_folder={out}",
            "--main_weight=3.0",
            f"--extra_sources=[{{data_folder: {second}, weight: 1.0, name: second, prep: folder}}]",
        ]
        + [a for a in TINY if "number_of_epochs" not in a]
        + ["--number_of_epochs=3"]
    )
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    main = sum(r["crops_main"] for r in rows)
    other = sum(r["crops_second"] for r in rows)
    n_utts = sum(
        len(m.read_text().splitlines()) - 1
        for m in (out / "manifests" / "train.csv", out / "manifests" / "second" / "train.csv")
    )
    assert main + other == 3 * (n_utts // 4) * 4  # 3 epochs of full batches of 4 pairs
    share = main / (main + other)
    assert abs(share - 0.75) < 0.12, share  # 3 sigma of a binomial over ~180 draws is 0.10
    assert "crops_main" in (out / "train_log.txt").read_text()
    manifest = out / "manifests" / "second" / "train.csv"
    assert len(manifest.read_text().splitlines()) == 1 + 32 - 2  # prep keeps 5 % (2) for validation


@pytest.mark.parametrize("cached", [False, True])
def test_vanished_and_corrupt_files_are_skipped_and_reported(tmp_path, cached):
    """Files gone or broken before training: from disk, or left out of the audio cache."""
    corpus = write_tone_corpus(str(tmp_path / "c"), n_speakers=6, n_utts=6, seed=1)
    cache = str(tmp_path / "o" / "audio_cache") if cached else None
    with open(YAML, encoding="utf-8") as f:  # the manifest is written while every file reads
        hp = load_hyperpyyaml(
            f, {"data_folder": corpus, "output_folder": str(tmp_path / "o"), "valid_ratio": 0.1, "seed": 7}
        )
    prepare_folder(corpus, hp["manifest_folder"], verification_file=None, valid_ratio=0.1, seed=7)
    with open(hp["train_annotation"]) as f:
        rows = list(csv.DictReader(f))
    gone, broken = rows[0], rows[1]
    os.remove(gone["wav"].replace("$data_root", corpus))
    with open(broken["wav"].replace("$data_root", corpus), "wb") as f:
        f.write(b"RIFF....garbage")
    brain, hp, data = build(corpus, tmp_path / "o", prepare=False, number_of_epochs=1, audio_cache=cache)
    if cached:
        assert len(hp["two_crops"].audio_cache) == len(rows) - 2 + len(data["valid"])
    fit(brain, hp, data)
    report = (tmp_path / "o" / "skipped_audio.txt").read_text().splitlines()
    skipped = {line.split("\t")[0] for line in report}
    assert skipped == {gone["ID"], broken["ID"]}
    reasons = {line.split("\t")[0]: line for line in report}
    assert "audio file not found" in reasons[gone["ID"]]
    assert "cannot read audio file" in reasons[broken["ID"]]
    history = json.loads((tmp_path / "o" / "history.jsonl").read_text().splitlines()[-1])
    assert history["skipped_audio"] == 2
    assert len(brain.losses) == (len(rows) // 4)  # the epoch ran in full
