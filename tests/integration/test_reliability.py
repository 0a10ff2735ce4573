"""Nothing a real corpus or a real user does kills a run (issue 26): bad audio in every stage,
run folders that move, one-line errors, interrupted stages that recover."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, TINY, check_metrics, run, train_moco, verify, write_tone_corpus

SUP = "recipes/Folder/SpeakerRec"
ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


def add_bad_files(root, speaker, rate=16000):
    """Files a real corpus may hold, in ``root/speaker``: NaN and inf float WAVs, a FLAC cut
    mid-frame, a WAV at 8 kHz, a 0.1 s file, a silent file and a 10-minute file."""
    folder = os.path.join(root, speaker)
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(rate * 2)).astype(np.float32)
    nan, inf = speech.copy(), speech.copy()
    nan[100:200], inf[300] = np.nan, np.inf
    sf.write(os.path.join(folder, "badnan.wav"), nan, rate, subtype="FLOAT")
    sf.write(os.path.join(folder, "badinf.wav"), inf, rate, subtype="FLOAT")
    flac = os.path.join(folder, "cut.flac")
    sf.write(flac, speech, rate)
    with open(flac, "rb") as f:
        data = f.read()
    with open(flac, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated mid-frame: the header says more
    sf.write(os.path.join(folder, "rate8k.wav"), speech[::2], rate // 2)
    sf.write(os.path.join(folder, "short.wav"), speech[: rate // 10], rate)
    sf.write(os.path.join(folder, "silent.wav"), np.zeros(rate * 2, np.float32), rate)
    long = (0.05 * rng.standard_normal(rate * 600)).astype(np.float32)
    sf.write(os.path.join(folder, "tenminutes.flac"), long, rate)
    return ["badnan.wav", "badinf.wav", "cut.flac", "rate8k.wav", "silent.wav"]


@pytest.fixture(params=["tones", "speech"])
def bad_corpus(request, tmp_path):
    """A corpus (generated tones, or speaker folders copied from the shared speech corpus)
    with the bad files in one speaker's folder, and a trial list naming two of them."""
    root = str(tmp_path / "corpus")
    if request.param == "tones":
        write_tone_corpus(root, n_speakers=8, n_utts=10)
        speakers = [f"spk{i}" for i in range(8)]
    else:
        shared = request.getfixturevalue("shared_speech")
        speakers = sorted(d for d in os.listdir(shared) if os.path.isdir(os.path.join(shared, d)))[:8]
        os.makedirs(root)
        for s in speakers:
            shutil.copytree(os.path.join(shared, s), os.path.join(root, s))
    bad = add_bad_files(root, speakers[0])
    files = {s: sorted(f for f in os.listdir(os.path.join(root, s)) if f not in bad) for s in speakers[-2:]}
    a, b = speakers[-2:]
    trials = [
        f"1 {a}/{files[a][0]} {a}/{files[a][1]}",
        f"0 {a}/{files[a][0]} {b}/{files[b][0]}",
        f"1 {b}/{files[b][0]} {b}/{files[b][1]}",
        f"0 {a}/{files[a][1]} {b}/{files[b][1]}",
        f"1 {b}/{files[b][2]} {b}/{files[b][1]}",
        f"0 {b}/{files[b][2]} {a}/{files[a][2]}",
    ]
    with open(os.path.join(root, "trials.txt"), "w") as f:
        f.write("\n".join(trials) + "\n")
    return root, speakers, bad


def named(path, names):
    text = open(path).read() if os.path.isfile(path) else ""
    return {n for n in names if n in text}


def test_bad_audio_in_training_validation_scoring_and_pseudo_labels(bad_corpus, tmp_path):
    root, speakers, bad = bad_corpus
    out = tmp_path / "moco"
    # the README's command; a large validation share so that bad files land in both halves
    printed = train_moco(root, out, "--number_of_epochs=2", "--valid_ratio=0.4", "--crop_seconds=1.0")
    assert "EER" in printed and json.load(open(out / "status.json"))["status"] == "finished"
    history = [json.loads(line) for line in open(out / "history.jsonl")]
    assert len(history) == 2 and all(np.isfinite(h["train_loss"]) for h in history)
    assert all(np.isfinite(h["valid_loss"]) for h in history)
    # every bad file is named: by the preparation (header problems) or when read
    reports = [out / "manifests" / "skipped.txt", out / "skipped_audio.txt"]
    seen = set().union(*(named(p, bad) for p in reports))
    log = open(out / "log.txt").read()
    assert {"badnan.wav", "badinf.wav"} <= seen | {n for n in bad if n in log}
    import torch

    norm = torch.load(next((out / "save").glob("CKPT*/mean_var_norm.ckpt")), weights_only=False)
    assert all(torch.isfinite(v).all() for v in norm.values() if torch.is_tensor(v))

    # scoring a list that names bad files: those trials are left out and counted, never 0
    trials = os.path.join(root, "trials.txt")
    extra_line = (
        f"0 {speakers[0]}/badnan.wav {speakers[-1]}/{sorted(os.listdir(os.path.join(root, speakers[-1])))[0]}"
    )
    with open(trials, "a") as f:
        f.write(extra_line + "\n1 " + f"{speakers[0]}/badinf.wav {speakers[0]}/silent.wav\n")
    verify(out, root, tmp_path / "plda", "--plda_n_clusters=4", yaml="verification_plda.yaml")
    metrics = check_metrics(tmp_path / "plda" / "metrics.json", 6)
    assert metrics["n_trials_skipped"] == 2 and metrics["skipped_audio"] == 3
    assert named(tmp_path / "plda" / "skipped_audio.txt", bad) == {"badnan.wav", "badinf.wav", "silent.wav"}
    assert len(open(tmp_path / "plda" / "scores.txt").read().splitlines()) == 6

    # the label-free pipeline's first round on the same run
    labels = tmp_path / "pl"
    run(
        [
            f"{SUP}/pseudo_labels.py",
            f"{SUP}/hparams/pseudo_labels.yaml",
            f"--pretrain_path={out}",
            f"--output_folder={labels}",
            "--n_clusters=3",
            "--device=cpu",
        ]
    )
    report = json.load(open(labels / "clusters.json"))
    kept = {line.split(",")[0] for line in open(labels / "train_all.csv").read().splitlines()[1:]}
    assert report["n_clusters"] == 3 and not {k for k in kept if os.path.basename(k) in ("badnan", "badinf")}


def test_a_moved_run_scores_with_plda_exports_and_seeds_training(tone_corpus, tmp_path):
    first = tmp_path / "first"
    train_moco(tone_corpus, first, "--number_of_epochs=2")
    moved = tmp_path / "elsewhere" / "run"
    os.makedirs(moved.parent)
    shutil.move(str(first), str(moved))
    verify(moved, tone_corpus, tmp_path / "eval", "--plda_n_clusters=3", yaml="verification_plda.yaml")
    assert not first.exists()  # nothing recreated at the old place (no save/, no log)
    check_metrics(tmp_path / "eval" / "metrics.json", 4)
    model = tmp_path / "model"
    run(["-m", "speechbrain_moco.export", f"--pretrain_path={moved}", f"--model_dir={model}"])
    assert (model / "embedding_model.ckpt").is_file() and not first.exists()
    # it seeds supervised training and pseudo-labels from its new place
    sup = tmp_path / "sup"
    run(
        [
            f"{SUP}/train_speaker_embeddings.py",
            f"{SUP}/hparams/train_ecapa.yaml",
            f"--data_folder={tone_corpus}",
            "--verification_file=trials.txt",
            f"--output_folder={sup}",
            f"--init_from={moved}",
            "--number_of_epochs=1",
        ]
        + [a for a in TINY if not a.startswith(("--queue_size", "--number_of_epochs"))]
    )
    assert json.load(open(sup / "run_info.json"))["init_from"] == str(moved)
    run(
        [
            f"{SUP}/pseudo_labels.py",
            f"{SUP}/hparams/pseudo_labels.yaml",
            f"--pretrain_path={moved}",
            f"--output_folder={tmp_path / 'pl'}",
            "--n_clusters=3",
            "--device=cpu",
        ]
    )
    assert json.load(open(tmp_path / "pl" / "clusters.json"))["n_clusters"] == 3
    # a run resumed at its new place (one more epoch) continues from its checkpoint
    train_moco(tone_corpus, moved, "--number_of_epochs=3")
    assert [json.loads(line)["epoch"] for line in open(moved / "history.jsonl")] == [1, 2, 3]
    assert not first.exists()
    # a needed input that is really gone is named, with how to supply it
    os.remove(moved / "manifests" / "train.csv")
    proc = subprocess.run(
        [
            sys.executable,
            "recipes/Folder/MoCo/verify.py",
            "recipes/Folder/MoCo/hparams/verification_plda.yaml",
            f"--data_folder={tone_corpus}",
            "--verification_file=trials.txt",
            f"--pretrain_path={moved}",
            f"--output_folder={tmp_path / 'eval2'}",
            "--device=cpu",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2 and "train_annotation" in proc.stderr and "--cohort_annotation" in proc.stderr
    assert "Traceback" not in proc.stderr


def one_line_error(args, env=None):
    proc = subprocess.run(
        [sys.executable] + args, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    return [line for line in proc.stderr.splitlines() if "error:" in line]


def test_user_mistakes_are_one_line_errors(tone_corpus, tmp_path):
    moco = ["recipes/Folder/MoCo/train_moco.py", "recipes/Folder/MoCo/hparams/moco.yaml"]
    (line,) = one_line_error(moco + [f"--output_folder={tmp_path / 'a'}", "--number_of_epochs=abc"])
    assert "--number_of_epochs=abc" in line and "whole number" in line
    (line,) = one_line_error(moco + [f"--output_folder={tmp_path / 'b'}", "--nuber_of_epochs=3"])
    assert "did you mean --number_of_epochs" in line
    (line,) = one_line_error(
        moco + [f"--data_folder={tmp_path / 'nowhere'}", f"--output_folder={tmp_path / 'c'}"]
    )
    assert "nowhere" in line
    import torch

    if not torch.cuda.is_available():
        (line,) = one_line_error(moco + [f"--output_folder={tmp_path / 'd'}", "--device=cuda:0"])
        assert "--device=cuda:0" in line and "--device=cpu" in line
    (tmp_path / "notaudio.wav").write_text("not audio")
    (line,) = one_line_error(
        [
            "-m",
            "speechbrain_moco.verify",
            f"{tone_corpus}/spk0/u0.wav",
            str(tmp_path / "notaudio.wav"),
            "--model",
            str(tmp_path),
        ]
    )
    assert "notaudio.wav" in line
    (line,) = one_line_error(
        [
            "recipes/Folder/SpeakerRec/label_free.py",
            "recipes/Folder/SpeakerRec/hparams/label_free.yaml",
            f"--data_folder={tmp_path / 'nowhere'}",
            f"--output_folder={tmp_path / 'lf'}",
        ]
    )
    assert "is not a folder" in line
    (line,) = one_line_error(["-m", "speechbrain_moco.compare", str(tmp_path), str(tmp_path)])
    assert "scores.txt" in line
    # on request, the traceback
    proc = subprocess.run(
        [sys.executable] + moco + [f"--output_folder={tmp_path / 'e'}", "--number_of_epochs=abc"],
        cwd=ROOT,
        env=dict(ENV, SBMOCO_TRACEBACK="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def kill_during(args, after_seconds, marker=None):
    """Start ``python ARGS``, SIGKILL it after ``after_seconds`` (or as soon as ``marker``
    exists), return whether it was still running."""
    proc = subprocess.Popen(
        [sys.executable] + args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    start = time.time()
    while time.time() - start < after_seconds and proc.poll() is None:
        if marker is not None and os.path.exists(marker):
            break
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return alive


def test_killed_scoring_and_pseudo_labelling_give_the_same_outputs_when_rerun(tone_corpus, tmp_path):
    run_folder = tmp_path / "moco"
    train_moco(tone_corpus, run_folder, "--number_of_epochs=2")
    score = [
        "recipes/Folder/MoCo/verify.py",
        "recipes/Folder/MoCo/hparams/verification_plda.yaml",
        f"--data_folder={tone_corpus}",
        "--verification_file=trials.txt",
        f"--pretrain_path={run_folder}",
        "--plda_n_clusters=3",
        "--device=cpu",
    ]
    run(score + [f"--output_folder={tmp_path / 'ref'}"])
    rng = np.random.default_rng(int(time.time()))
    killed = tmp_path / "killed"
    # killed at a random point: during extraction (after the training embeddings are written)
    kill_during(
        score + [f"--output_folder={killed}"], float(rng.uniform(3, 9)), killed / "train_embeddings.pt"
    )
    run(score + [f"--output_folder={killed}"])
    # the same trials in the same order and the same scores; not byte-equal: two processes'
    # embeddings differ by ~2e-7 (float reduction order), which the toy PLDA (3 clusters of a
    # tiny corpus) amplifies to ~1e-4 relative in its scores
    got = [line.split() for line in (killed / "scores.txt").read_text().splitlines()]
    ref = [line.split() for line in (tmp_path / "ref" / "scores.txt").read_text().splitlines()]
    assert [(r[0], r[1], r[3]) for r in got] == [(r[0], r[1], r[3]) for r in ref] and ref
    np.testing.assert_allclose([float(r[2]) for r in got], [float(r[2]) for r in ref], rtol=2e-3)
    assert not list(killed.glob("*.tmp"))
    labels = [
        "recipes/Folder/SpeakerRec/pseudo_labels.py",
        "recipes/Folder/SpeakerRec/hparams/pseudo_labels.yaml",
        f"--pretrain_path={run_folder}",
        "--n_clusters=3",
        "--device=cpu",
    ]
    run(labels + [f"--output_folder={tmp_path / 'pl_ref'}"])
    pl = tmp_path / "pl"
    kill_during(labels + [f"--output_folder={pl}"], float(rng.uniform(3, 9)), pl / "train_embeddings.pt")
    run(labels + [f"--output_folder={pl}"])
    for name in ("train.csv", "valid.csv", "train_all.csv"):
        assert (pl / name).read_text() == (tmp_path / "pl_ref" / name).read_text(), name
