"""Recipe tests: run the command lines on tiny data and check the files they write."""

import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = ["--channels=16", "--emb_dim=16", "--n_mels=24", "--batch_size=4", "--queue_size=8",
        "--crop_seconds=0.5", "--num_workers=0", "--number_of_epochs=1", "--device=cpu"]


def run(args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def check_metrics(path, n_trials):
    metrics = json.load(open(path))
    for key in ("EER", "minDCF_p0.01", "minDCF_p0.05", "n_trials"):
        assert key in metrics
    assert metrics["n_trials"] == n_trials
    assert 0.0 <= metrics["EER"] <= 100.0
    return metrics


def test_train_then_verify_commands(tone_corpus, tmp_path):
    recipe = "recipes/Folder/MoCo"
    out, ev = tmp_path / "out", tmp_path / "eval"
    stdout = run([f"{recipe}/train_moco.py", f"{recipe}/hparams/moco.yaml",
                  f"--data_folder={tone_corpus}", "--verification_file=trials.txt",
                  f"--output_folder={out}"] + TINY)
    assert "EER:" in stdout and "baseline EER" in stdout
    for name in ("train_log.txt", "hyperparams.yaml", "history.jsonl", "eval/scores.txt",
                 "eval/metrics.json", "eval/fbank_stats_baseline/metrics.json", "manifests/train.csv"):
        assert (out / name).is_file(), name
    train_rows = (out / "manifests" / "train.csv").read_text().splitlines()[1:]
    assert train_rows and not any(r.split(",")[-1] in ("spk4", "spk5") for r in train_rows)
    check_metrics(out / "eval" / "metrics.json", 4)
    stdout = run([f"{recipe}/verify.py", f"{recipe}/hparams/verification_cosine.yaml",
                  f"--data_folder={tone_corpus}", "--verification_file=trials.txt",
                  f"--pretrain_path={out}", f"--output_folder={ev}", "--device=cpu"])
    verify_metrics = check_metrics(ev / "metrics.json", 4)
    # the same encoder on the same trials gives the same scores as the training job's evaluation
    assert (ev / "scores.txt").read_text() == (out / "eval" / "scores.txt").read_text()
    assert verify_metrics["EER"] == json.load(open(out / "eval" / "metrics.json"))["EER"]
    lines = (ev / "scores.txt").read_text().split("\n")
    assert len(lines[0].split()) == 4 and lines[0].split()[3] in ("0", "1")
    for png in ("det.png", "score_hist.png", "training_curves.png"):
        assert (ev / png).stat().st_size > 1000
    # label-free back-ends: PLDA on pseudo-labels, cosine + AS-norm with a training cohort
    for name, extra in (("plda", ["--plda_n_clusters=4"]), ("asnorm", ["--score_norm=asnorm",
                                                                      "--cohort_top_k=5"])):
        yaml = "verification_plda.yaml" if name == "plda" else "verification_cosine.yaml"
        run([f"{recipe}/verify.py", f"{recipe}/hparams/{yaml}", f"--data_folder={tone_corpus}",
             "--verification_file=trials.txt", f"--pretrain_path={out}",
             f"--output_folder={tmp_path / name}", "--device=cpu"] + extra)
        metrics = check_metrics(tmp_path / name / "metrics.json", 4)
        assert metrics["backend"] == ("PLDAScorer" if name == "plda" else "CosineScorer")
        assert metrics["score_norm"] == (None if name == "plda" else "asnorm")
        assert (tmp_path / name / "train_embeddings.pt").is_file()
    # the cached trial embeddings are reused by a second scoring run
    before = (ev / "embeddings.pt").stat().st_mtime
    run([f"{recipe}/verify.py", f"{recipe}/hparams/verification_cosine.yaml", f"--data_folder={tone_corpus}",
         "--verification_file=trials.txt", f"--pretrain_path={out}", f"--output_folder={ev}",
         "--device=cpu", "--mean_subtraction=True"])
    assert (ev / "embeddings.pt").stat().st_mtime == before
    # checkpoint averaging and crop-averaged embeddings
    run([f"{recipe}/verify.py", f"{recipe}/hparams/verification_cosine.yaml", f"--data_folder={tone_corpus}",
         "--verification_file=trials.txt", f"--pretrain_path={out}", f"--output_folder={tmp_path / 'avg'}",
         "--device=cpu", "--average_checkpoints=2", "--crop_seconds=0.5"])
    check_metrics(tmp_path / "avg" / "metrics.json", 4)
    assert (tmp_path / "avg" / "scores.txt").read_text() != (ev / "scores.txt").read_text()


def test_template_runs_on_embedded_corpus(tmp_path):
    # a relative corpus folder, as the shipped default results/embedded_corpus (relative to the cwd)
    corpus = os.path.relpath(tmp_path / "corpus", ROOT)
    stdout = run(["templates/moco_speaker/train.py", "templates/moco_speaker/moco.yaml",
                  f"--output_folder={tmp_path / 't'}", f"--embedded_corpus_folder={corpus}",
                  "--number_of_epochs=1", "--channels=16", "--emb_dim=16", "--device=cpu"])
    assert "EER:" in stdout
    assert (tmp_path / "corpus" / "trials.txt").is_file()
    check_metrics(tmp_path / "t" / "eval" / "metrics.json",
                  len((tmp_path / "corpus" / "trials.txt").read_text().split("\n")) - 1)


def test_missing_data_folder_is_a_clear_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "recipes/Folder/MoCo/train_moco.py",
                           "recipes/Folder/MoCo/hparams/moco.yaml", f"--data_folder={tmp_path}/nope",
                           f"--output_folder={tmp_path}/o"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "data_folder does not exist" in proc.stderr


def test_shared_speech_corpus_commands(shared_speech, tmp_path):
    """Both Folder commands on ../shared/data/speechocean762_dev with its trials.txt."""
    out, ev = tmp_path / "out", tmp_path / "eval"
    run(["recipes/Folder/MoCo/train_moco.py", "recipes/Folder/MoCo/hparams/moco.yaml",
         f"--data_folder={shared_speech}", f"--output_folder={out}",
         f"--noise_folder={shared_speech}/../noise", f"--rir_folder={shared_speech}/../rir",
         "--noise_prob=1.0", "--reverb_prob=1.0"]
        + [a for a in TINY if not a.startswith(("--batch_size", "--queue_size"))]
        + ["--batch_size=32", "--queue_size=64", "--optimizer_step_limit=3"])
    run(["recipes/Folder/MoCo/verify.py", "recipes/Folder/MoCo/hparams/verification_cosine.yaml",
         f"--data_folder={shared_speech}", "--verification_file=trials.txt",
         f"--pretrain_path={out}", f"--output_folder={ev}", "--batch_size=16", "--device=cpu"],
        timeout=900)
    metrics = check_metrics(ev / "metrics.json", 4000)
    assert metrics["n_target"] == 2000


def test_same_seed_same_data_gives_identical_curve_and_eer(tone_corpus, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        run(["recipes/Folder/MoCo/train_moco.py", "recipes/Folder/MoCo/hparams/moco.yaml",
             f"--data_folder={tone_corpus}", "--verification_file=trials.txt",
             f"--output_folder={out}"] + [a for a in TINY if "number_of_epochs" not in a]
            + ["--number_of_epochs=2"])
        outs.append(out)
    curves = [[json.loads(line) for line in (o / "history.jsonl").read_text().splitlines()] for o in outs]
    assert len(curves[0]) == 2
    for row_a, row_b in zip(*curves):
        assert row_a["train_loss"] == row_b["train_loss"] and row_a["valid_loss"] == row_b["valid_loss"]
    assert (outs[0] / "eval" / "scores.txt").read_text() == (outs[1] / "eval" / "scores.txt").read_text()
    assert json.load(open(outs[0] / "eval" / "metrics.json"))["EER"] == \
        json.load(open(outs[1] / "eval" / "metrics.json"))["EER"]
