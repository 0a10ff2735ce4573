"""VoxCeleb, LibriSpeech and CN-Celeb recipes on miniature trees with the real layouts."""

import json
import os
import shutil

import numpy as np
import soundfile as sf
from conftest import TINY, run, train_moco, verify

ARGS = [a for a in TINY if not a.startswith("--queue_size")] + ["--queue_size=8", "--dev_ratio=0.1"]


def tone(path, seed, seconds=1.0, fmt=None):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (100 + 20 * seed % 400) * t) + 0.02 * rng.standard_normal(t.size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, x.astype(np.float32), 16000, format=fmt)


def check_run(recipe, out, n_trials):
    metrics = json.load(open(out / "eval" / "metrics.json"))
    assert metrics["n_trials"] == n_trials
    assert (out / "manifests" / "dev.csv").is_file() and (out / "train_log.txt").is_file()
    return metrics


def voxceleb_tree(root):
    for s in range(6):
        for u in range(6):
            tone(str(root / "wav" / f"id1000{s}" / f"vid{u % 2}" / f"0000{u}.wav"), 10 * s + u)
    (root / "veri_test2.txt").write_text(
        "1 id10004/vid0/00000.wav id10004/vid1/00001.wav\n0 id10004/vid0/00000.wav id10005/vid1/00003.wav\n"
        "1 id10005/vid0/00002.wav id10005/vid1/00003.wav\n0 id10005/vid0/00002.wav id10004/vid0/00004.wav\n"
    )
    return root


def test_voxceleb_recipe(tmp_path):
    root = voxceleb_tree(tmp_path / "voxceleb1")
    out = tmp_path / "out"
    train_moco(root, out, trials=root / "veri_test2.txt", recipe="recipes/VoxCeleb/MoCo", base=ARGS)
    check_run("VoxCeleb", out, 4)
    train = (out / "manifests" / "train.csv").read_text()
    assert "id10004" not in train and "id10005" not in train and "id10000/vid0/00000" in train
    ev = tmp_path / "ev"
    verify(out, f"{root}/wav", ev, trials=root / "veri_test2.txt", recipe="recipes/VoxCeleb/MoCo")
    assert json.load(open(ev / "metrics.json"))["n_trials"] == 4


def test_voxceleb_xvector_yaml(tmp_path):
    root = voxceleb_tree(tmp_path / "voxceleb1")
    out = tmp_path / "x"
    train_moco(root, out, yaml="moco_xvector.yaml", trials=None, recipe="recipes/VoxCeleb/MoCo", base=ARGS)
    assert (out / "train_log.txt").read_text().count("epoch: 1") == 1
    assert not (out / "eval").exists()  # no trial list given: nothing to score


def test_corpus_recipes_require_a_data_folder(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run(
        [
            sys.executable,
            "recipes/LibriSpeech/MoCo/train_moco.py",
            "recipes/LibriSpeech/MoCo/hparams/moco.yaml",
            f"--output_folder={tmp_path}",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "--data_folder is required" in proc.stdout + proc.stderr


def test_librispeech_recipe_generates_trials(tmp_path):
    root = tmp_path / "LibriSpeech"
    for subset, speakers in (("train-clean-100", range(5)), ("test-clean", range(5, 8))):
        for s in speakers:
            for u in range(6):
                tone(
                    str(root / subset / f"{100 + s}" / "7" / f"{100 + s}-7-{u:04d}.flac"),
                    10 * s + u,
                    fmt="FLAC",
                )
    out = tmp_path / "out"
    run(
        [
            "recipes/LibriSpeech/MoCo/train_moco.py",
            "recipes/LibriSpeech/MoCo/hparams/moco.yaml",
            f"--data_folder={root}",
            f"--output_folder={out}",
            "--n_trial_speakers=3",
            "--trials_per_speaker=4",
        ]
        + ARGS
    )
    trials = (out / "manifests" / "trials.txt").read_text().splitlines()
    check_run("LibriSpeech", out, len(trials))
    assert all(line.split()[1].startswith("test-clean/") for line in trials)


def test_cnceleb_recipe(tmp_path):
    root = tmp_path / "CN-Celeb_flac"
    for s in range(5):
        for u in range(6):
            tone(str(root / "data" / f"id0000{s}" / f"speech-0{u % 2}-00{u}.flac"), 10 * s + u, fmt="FLAC")
    for s in (8, 9):
        tone(str(root / "eval" / "enroll" / f"id0080{s}-enroll.flac"), 100 + s, fmt="FLAC")
        tone(str(root / "eval" / "test" / f"id0080{s}-singing-01-001.flac"), 200 + s, fmt="FLAC")
    lists = root / "eval" / "lists"
    lists.mkdir()
    enrol = [f"id0080{s}-enroll enroll/id0080{s}-enroll.flac\n" for s in (8, 9)]
    (lists / "enroll.lst").write_text("".join(enrol))
    (lists / "test.lst").write_text("".join(f"test/id0080{s}-singing-01-001.flac\n" for s in (8, 9)))
    (lists / "trials.lst").write_text(
        "id00808-enroll test/id00808-singing-01-001.wav 1\n"
        "id00808-enroll test/id00809-singing-01-001.wav 0\n"
        "id00809-enroll test/id00809-singing-01-001.wav 1\n"
        "id00809-enroll test/id00808-singing-01-001.wav 0\n"
    )
    out = tmp_path / "out"
    run(
        [
            "recipes/CNCeleb/MoCo/train_moco.py",
            "recipes/CNCeleb/MoCo/hparams/moco.yaml",
            f"--data_folder={root}",
            f"--output_folder={out}",
        ]
        + ARGS
    )
    check_run("CNCeleb", out, 4)
    shutil.rmtree(out / "save")
