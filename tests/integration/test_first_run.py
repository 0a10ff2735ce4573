"""A first run explains itself: a clean log, a status file, a final line, clear errors."""

import json
import os
import subprocess
import sys

from conftest import ROOT, TINY, train_moco


def recipe(args, cwd=ROOT):
    """Run a recipe command; returns the completed process (whatever its exit status)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_log_is_clean_and_names_real_checkpoints(tone_corpus, tmp_path):
    out = tmp_path / "out"
    proc = recipe(
        [
            "recipes/Folder/MoCo/train_moco.py",
            "recipes/Folder/MoCo/hparams/moco.yaml",
            f"--data_folder={tone_corpus}",
            "--verification_file=trials.txt",
            f"--output_folder={out}",
            *[a for a in TINY if "epochs" not in a],
            "--number_of_epochs=2",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torchvision" not in proc.stderr and "torchvision" not in (out / "log.txt").read_text()
    log = (out / "log.txt").read_text()
    for noise in ("matplotlib", "empty state_dict", ".tmp-CKPT"):
        assert noise not in log.split("speechbrain.core - INFO - Gradscaler")[1], noise
    saved = [
        line.rsplit(" ", 1)[1] for line in log.splitlines() if "Saved an end-of-epoch checkpoint" in line
    ]
    assert len(saved) == 2 and all("/save/CKPT+" in path for path in saved)
    assert os.path.isdir(saved[-1])  # the folder the log names exists
    assert "corpus " in log and "2 epochs, trial list" in log
    assert proc.stdout.strip().splitlines()[-1].startswith("EER: ")
    status = json.load(open(out / "status.json"))
    assert status["status"] == "finished" and "train_moco.py" in status["command"]
    assert "train_moco.py" in json.load(open(out / "run_info.json"))["command"]


def test_a_run_without_trial_list_still_says_how_it_ended(tone_corpus, tmp_path):
    stdout = train_moco(tone_corpus, tmp_path / "o", trials=None)
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("trained 1 epochs, checkpoints in") and "score one with verify.py" in last


def test_an_empty_data_folder_fails_clearly_and_marks_the_run(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "o"
    proc = recipe(
        [
            "recipes/Folder/MoCo/train_moco.py",
            "recipes/Folder/MoCo/hparams/moco.yaml",
            f"--data_folder={tmp_path / 'empty'}",
            f"--output_folder={out}",
        ]
    )
    assert proc.returncode != 0 and "no usable audio file" in proc.stdout + proc.stderr
    status = json.load(open(out / "status.json"))
    assert status["status"] == "failed" and "no usable audio file" in status["error"]
    verify = recipe(
        [
            "recipes/Folder/MoCo/verify.py",
            "recipes/Folder/MoCo/hparams/verification_cosine.yaml",
            f"--data_folder={tmp_path}",
            "--verification_file=x.txt",
            f"--pretrain_path={out}",
        ]
    )
    assert verify.returncode != 0  # the trial list is missing first; then the run would be refused


def test_a_misspelled_override_names_the_closest_key(tone_corpus, tmp_path):
    out = tmp_path / "o"
    proc = recipe(
        [
            "recipes/Folder/MoCo/train_moco.py",
            "recipes/Folder/MoCo/hparams/moco.yaml",
            f"--data_folder={tone_corpus}",
            f"--output_folder={out}",
            "--nuber_of_epochs=3",
        ]
    )
    assert proc.returncode != 0
    assert "--nuber_of_epochs: moco.yaml has no such key; did you mean --number_of_epochs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) < 40
    assert not out.exists()  # nothing that looks like a run
    # the scoring and pseudo-label scripts say the same before they read anything
    for script, yaml, typo, key in (
        ("MoCo/verify.py", "MoCo/hparams/verification_cosine.yaml", "--bakend=plda", "--backend"),
        (
            "SpeakerRec/pseudo_labels.py",
            "SpeakerRec/hparams/pseudo_labels.yaml",
            "--n_cluster=4",
            "--n_clusters",
        ),
    ):
        proc = recipe([f"recipes/Folder/{script}", f"recipes/Folder/{yaml}", f"--pretrain_path={out}", typo])
        name = os.path.basename(yaml)
        assert f"{typo.split('=')[0]}: {name} has no such key; did you mean {key}" in proc.stderr, script


def test_scoring_a_failed_run_says_so(tmp_path, tone_corpus):
    from speechbrain_moco.run_folder import RunStatus
    from speechbrain_moco.verification import load_trained_encoder

    run = tmp_path / "run"
    train_moco(tone_corpus, run)
    for ckpt in (run / "save").glob("CKPT+*"):
        for f in ckpt.iterdir():
            f.unlink()
        ckpt.rmdir()
    try:
        with RunStatus(str(run)):
            raise ValueError("boom")
    except ValueError:
        pass
    try:
        load_trained_encoder(str(run))
    except FileNotFoundError as err:
        assert "status.json says failed" in str(err)
    else:
        raise AssertionError("a run without checkpoints was loaded")
