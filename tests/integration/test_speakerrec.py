"""SpeakerRec recipe: MoCo-initialised supervised training, pseudo-labels, comparison."""

import json
import os
import subprocess
import sys

import torch
from conftest import ROOT, check_metrics, run, run_group, train_moco, verify

SUP = "recipes/Folder/SpeakerRec"
SMALL = [
    "--channels=16",
    "--emb_dim=16",
    "--n_mels=24",
    "--batch_size=4",
    "--crop_seconds=0.5",
    "--num_workers=0",
    "--device=cpu",
]


def latest_encoder(run_folder):
    from speechbrain_moco.run_folder import embedding_checkpoint

    return torch.load(embedding_checkpoint(str(run_folder)), map_location="cpu")


def moco_run(tone_corpus, out):
    train_moco(tone_corpus, out, "--queue_size=8", "--number_of_epochs=1", base=SMALL)
    return out


def test_init_from_moco_then_verify_and_pseudo_labels(tone_corpus, tmp_path):
    moco = moco_run(tone_corpus, tmp_path / "moco")
    train = [
        f"{SUP}/train_speaker_embeddings.py",
        f"{SUP}/hparams/train_ecapa.yaml",
        f"--data_folder={tone_corpus}",
        "--verification_file=trials.txt",
    ] + SMALL
    # one epoch with the encoder frozen: the saved encoder is exactly the MoCo query encoder
    frozen = tmp_path / "frozen"
    out = run(
        train
        + [f"--output_folder={frozen}", f"--init_from={moco}", "--freeze_epochs=1", "--number_of_epochs=1"]
    )
    assert "EER:" in out
    moco_state, frozen_state = latest_encoder(moco), latest_encoder(frozen)
    assert moco_state.keys() == frozen_state.keys()
    for name, tensor in moco_state.items():
        assert torch.equal(frozen_state[name], tensor), name
    info = json.load(open(frozen / "run_info.json"))
    assert info["init_from"] == str(moco) and info["n_speakers"] == 4
    history = [json.loads(line) for line in open(frozen / "history.jsonl")]
    assert history[0]["encoder_frozen"] is True and "valid_acc" in history[0]
    assert os.path.isfile(frozen / "save" / "label_encoder.txt")
    assert "the initialised encoder is never fine-tuned" in (frozen / "log.txt").read_text()
    # unfrozen, the encoder moves away from the initialisation
    tuned = tmp_path / "tuned"
    run(
        train
        + [f"--output_folder={tuned}", f"--init_from={moco}", "--freeze_epochs=0", "--number_of_epochs=1"]
    )
    assert not torch.equal(
        latest_encoder(tuned)["blocks.0.conv.conv.weight"], moco_state["blocks.0.conv.conv.weight"]
    )
    assert "never fine-tuned" not in (tuned / "log.txt").read_text()
    # the foundation's verify.py scores a supervised run like a MoCo run
    ev = tmp_path / "eval"
    verify(tuned, tone_corpus, ev)
    check_metrics(ev / "metrics.json", 4)
    assert (ev / "scores.txt").read_text() == (tuned / "eval" / "scores.txt").read_text()
    # pseudo-labels from the MoCo run, then supervised training on them
    pl = tmp_path / "pl"
    out = run(
        [
            f"{SUP}/pseudo_labels.py",
            f"{SUP}/hparams/pseudo_labels.yaml",
            f"--pretrain_path={moco}",
            f"--output_folder={pl}",
            "--n_clusters=3",
            "--keep_ratio=0.9",
            "--device=cpu",
        ]
    )
    report = json.load(open(pl / "clusters.json"))
    assert (
        report["n_clusters"] == 3
        and report["train_rows"] == len((moco / "manifests" / "train.csv").read_text().splitlines()) - 1
    )
    assert 0.0 <= report["quality_all"]["purity"] <= 1.0
    plrun = tmp_path / "plrun"
    run(
        train
        + [
            f"--output_folder={plrun}",
            f"--init_from={moco}",
            "--number_of_epochs=1",
            f"--train_annotation={pl}/train.csv",
            f"--valid_annotation={pl}/valid.csv",
        ]
    )
    assert json.load(open(plrun / "run_info.json"))["n_speakers"] == report["train_speakers"]


def test_init_from_mismatched_architecture_fails_clearly(tone_corpus, tmp_path):
    moco = moco_run(tone_corpus, tmp_path / "moco")
    env = dict(os.environ, PYTHONPATH=ROOT)
    args = [
        sys.executable,
        f"{SUP}/train_speaker_embeddings.py",
        f"{SUP}/hparams/train_ecapa.yaml",
        f"--data_folder={tone_corpus}",
        "--verification_file=trials.txt",
        f"--output_folder={tmp_path / 'wide'}",
        f"--init_from={moco}",
        "--number_of_epochs=1",
    ]
    args += [a if not a.startswith("--channels") else "--channels=24" for a in SMALL]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr  # SpeechBrain's logger may print the traceback to stdout
    assert proc.returncode != 0
    assert "does not fit the embedding_model" in log and "embedding_model.ckpt" in log
    # the x-vector yaml on an ECAPA MoCo run: another architecture altogether
    args[2] = f"{SUP}/hparams/train_xvector.yaml"
    args[5] = f"--output_folder={tmp_path / 'xvec'}"
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "does not fit" in proc.stdout + proc.stderr


def test_compare_over_folds_and_seeds_with_intervals_variants_and_reuse(tmp_path):
    from conftest import write_tone_corpus

    corpus = write_tone_corpus(str(tmp_path / "tones"), n_speakers=8, n_utts=6)
    os.remove(os.path.join(corpus, "trials.txt"))  # the split generates its own list
    out = tmp_path / "cmp"
    tiny = "channels: 16, emb_dim: 16, n_mels: 24, batch_size: 4, crop_seconds: 0.5, num_workers: 0"
    compare = [
        f"{SUP}/compare.py",
        f"--data_folder={corpus}",
        f"--output_folder={out}",
        "--folds=2",
        "--seeds",
        "1",
        "2",
        "--systems",
        "moco",
        "scratch",
        "moco_init",
        "lf",
        "moco_plda",
        "--resamples=100",
        "--stage_args=" + " ".join(SMALL[:-1] + ["--number_of_epochs=1"]),
        "--moco_args=--queue_size=8",  # a MoCo key: the supervised yamls refuse it
        "--label_free_args=--pseudo_label_overrides={n_clusters: 4} "
        f"--train_overrides={{{tiny}, number_of_epochs: 1}}",
    ]
    stdout = run(compare, timeout=1200)
    result = json.load(open(out / "comparison.json"))
    assert list(result["systems"]) == ["moco", "scratch", "moco_init", "lf", "moco_plda"]
    assert result["lists"] == ["trials_all.txt"] and result["seeds"] == [1, 2]
    for name, system in result["systems"].items():
        summary = system["summary"]["trials_all.txt"]
        assert summary["n_runs"] == 4 and summary["n_folds"] == 2, name
        low, high = summary["EER_ci95"]
        assert 0.0 <= low <= high <= 100.0 and summary["EER_std_seeds"] >= 0.0
        assert sorted(summary["runs"]) == ["fold0/seed1", "fold0/seed2", "fold1/seed1", "fold1/seed2"]
    pairs = {(c["B"], c["A"]) for c in result["comparisons"]}
    assert pairs == {
        ("moco_init", "scratch"),
        ("moco", "scratch"),
        ("lf", "moco"),
        ("moco_plda", "moco"),
        ("lf", "moco_init"),
    }
    for c in result["comparisons"]:
        low, high = c["difference_ci95"]
        assert c["half_width"] == (high - low) / 2 >= 0.0
        assert c["verdict"] == ("better" if high < 0 else "worse" if low > 0 else "not resolved")
    assert "resolvable" in stdout and "| moco_init vs scratch | trials_all.txt |" in stdout
    assert result["pseudo_labels"] and all(r["n_clusters"] == 4 for r in result["pseudo_labels"])
    assert (out / "det_trials_all.png").stat().st_size > 1000
    # both folds: every speaker is tested once, and no test speaker trains in its fold
    folds = [json.load(open(out / s / "split.json")) for s in ("split", "split_f1")]
    assert folds[0]["test_speakers"] == folds[1]["train_speakers"]
    for fold, split in enumerate(folds):
        rows = (out / f"f{fold}" / "s1" / "moco" / "manifests" / "train.csv").read_text().splitlines()[1:]
        assert rows and not {r.split(",")[-1] for r in rows} & set(split["test_speakers"])
    # the label-free round starts from the same seed's MoCo run
    info = json.load(open(out / "f0" / "s2" / "moco_init" / "run_info.json"))
    assert info["init_from"] == str(out / "f0" / "s2" / "moco") and info["seed"] == 2
    lf = json.load(open(out / "f1" / "s1" / "lf" / "stages.json"))
    assert lf["moco_run"] == str(out / "f1" / "s1" / "moco") and lf["final"] == "pl1"
    # a second call reuses every stage; a variant adds only its own stages
    marker = (out / "f0" / "s1" / "moco.done.json").stat().st_mtime_ns
    scored = (out / "f0" / "s1" / "eval" / "scratch" / "trials_all.done.json").stat().st_mtime_ns
    stdout = run(compare + ["--variant", "moco_init_frz0=moco_init:--freeze_epochs=0"], timeout=900)
    assert (out / "f0" / "s1" / "moco.done.json").stat().st_mtime_ns == marker
    assert (out / "f0" / "s1" / "eval" / "scratch" / "trials_all.done.json").stat().st_mtime_ns == scored
    result = json.load(open(out / "comparison.json"))
    assert result["systems"]["moco_init_frz0"]["summary"]["trials_all.txt"]["n_runs"] == 4
    assert {"B": "moco_init_frz0", "A": "moco_init"}.items() <= next(
        c for c in result["comparisons"] if c["B"] == "moco_init_frz0"
    ).items()
    for fold in (0, 1):
        frz = json.load(open(out / f"f{fold}" / "s1" / "moco_init_frz0" / "run_info.json"))
        assert frz["freeze_epochs"] == 0 and frz["init_from"] == str(out / f"f{fold}" / "s1" / "moco")
    assert "moco_init_frz0 vs moco_init" in stdout


def test_supervised_recipe_under_torchrun_with_two_processes(tone_corpus, tmp_path):
    """DDP on CPU (gloo): per-process batch norm, label encoder made once, rank 0 evaluates."""
    moco = moco_run(tone_corpus, tmp_path / "moco")
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29541",
        f"{SUP}/train_speaker_embeddings.py",
        f"{SUP}/hparams/train_ecapa.yaml",
        f"--data_folder={tone_corpus}",
        "--verification_file=trials.txt",
        f"--output_folder={out}",
        f"--init_from={moco}",
        "--freeze_epochs=1",
        "--number_of_epochs=2",
        "--batch_size=2",
        "--distributed_backend=gloo",
    ] + [a for a in SMALL if not a.startswith("--batch_size")]
    code, printed = run_group(cmd, env, timeout=600)
    assert code == 0, printed[-3000:]
    history = [json.loads(line) for line in open(out / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2]  # written once, by rank 0
    assert [h["encoder_frozen"] for h in history] == [True, False]
    check_metrics(out / "eval" / "metrics.json", 4)
    assert len((out / "save" / "label_encoder.txt").read_text().splitlines()) >= 4
