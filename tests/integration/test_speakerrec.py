"""SpeakerRec recipe: MoCo-initialised supervised training, pseudo-labels, comparison."""

import json
import os
import subprocess
import sys

import torch
from conftest import ROOT, check_metrics, run, train_moco, verify

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


def test_compare_writes_table_and_det(tmp_path):
    from conftest import write_tone_corpus

    corpus = write_tone_corpus(str(tmp_path / "tones"), n_speakers=8, n_utts=6)
    os.remove(os.path.join(corpus, "trials.txt"))  # the split generates its own list
    out = tmp_path / "cmp"
    compare = [f"{SUP}/compare.py", f"--data_folder={corpus}", f"--output_folder={out}", "--n_clusters=4"]
    compare += ["--rounds=1", "--stage_args=" + " ".join(SMALL[:-1] + ["--number_of_epochs=1"])]
    stdout = run(compare, timeout=900)
    result = json.load(open(out / "comparison.json"))
    assert [r["system"] for r in result["systems"]] == ["moco", "scratch", "moco_init", "pl1"]
    assert result["n_train_speakers"] == 4 and result["n_test_speakers"] == 4
    for row in result["systems"]:
        assert 0.0 <= row["metrics"]["trials.txt"]["EER"] <= 100.0
        assert row["total_seconds"] >= row["train_seconds"] > 0
    assert (out / "det_trials.png").stat().st_size > 1000
    assert "| moco_init |" in stdout and "relative" in stdout
    # test speakers never train: no test speaker in any training manifest
    test_spk = set(json.load(open(out / "split" / "split.json"))["test_speakers"])
    for system in ("moco", "scratch"):
        rows = (out / system / "manifests" / "train.csv").read_text().splitlines()[1:]
        assert rows and not {r.split(",")[-1] for r in rows} & test_spk
    # a second call reuses every stage and every scoring
    marker = (out / "moco.done.json").stat().st_mtime
    scored = {
        s: (out / "eval" / s / "trials" / "metrics.json").stat().st_mtime_ns for s in ("moco", "scratch")
    }
    run(compare)
    assert (out / "moco.done.json").stat().st_mtime == marker
    for system, mtime in scored.items():
        assert (out / "eval" / system / "trials" / "metrics.json").stat().st_mtime_ns == mtime, system
    # a run whose checkpoints changed is scored again, the others are not
    ckpt = next(p for p in (out / "moco" / "save").rglob("*") if p.is_file())
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    # the label-free pipeline and MoCo alone, per seed, by cosine and PLDA (issue 19)
    tiny = "channels: 16, emb_dim: 16, n_mels: 24, batch_size: 4, crop_seconds: 0.5, num_workers: 0"
    lf_args = [
        "--label_free",
        "--label_free_args=--rounds=1 --pseudo_label_overrides={n_clusters: 4} "
        f"--moco_overrides={{{tiny}, queue_size: 8, number_of_epochs: 2, ssps_start_epoch: 2}} "
        f"--train_overrides={{{tiny}, number_of_epochs: 1}}",
    ]
    stdout = run(compare + lf_args + ["--short_epochs=2"], timeout=900)
    assert (out / "eval" / "moco" / "trials" / "metrics.json").stat().st_mtime_ns != scored["moco"]
    assert (out / "eval" / "scratch" / "trials" / "metrics.json").stat().st_mtime_ns == scored["scratch"]
    result = json.load(open(out / "comparison.json"))
    assert [r["system"] for r in result["systems"]][-2:] == ["ssps", "lf_pl1"]
    summary = result["label_free"]["trials.txt"]
    assert set(summary["cosine_mean_eer"]) == {"moco", "ssps", "lf_pl1"}
    assert set(summary["plda_mean_eer"]) == {"moco", "lf_pl1"} and summary["best"] in ("ssps", "lf_pl1")
    assert "label-free, trials.txt" in stdout
    assert os.readlink(out / "lf" / "final") == "pl1"
    # a shorter supervised schedule (its own --number_of_epochs wins over --stage_args'),
    # compared with the scratch run of its own schedule
    assert result["change_reference"] == {"moco_init": "scratch", "moco_init_e2": "scratch_e2"}
    for system, epochs in (("scratch", 1), ("scratch_e2", 2), ("moco_init_e2", 2)):
        log = (out / system / "train_log.txt").read_text().splitlines()
        assert [line.split(",")[0] for line in log] == [f"epoch: {e}" for e in range(1, epochs + 1)]
    assert "moco_init_e2 vs scratch_e2, trials.txt" in stdout
    # more systems: the done ones are reused; an encoder-LR variant, a freeze variant and a
    # second seed of every supervised system are added
    variants = ["--encoder_lr_scale=0.5", "--freeze_epochs=0", "--seeds", "3"]
    stdout = run(compare + variants, timeout=900)
    assert (out / "moco.done.json").stat().st_mtime == marker
    result = json.load(open(out / "comparison.json"))
    assert [r["system"] for r in result["systems"]] == [
        "moco",
        "scratch",
        "moco_init",
        "pl1",
        "moco_init_lr0.5",
        "moco_init_frz0",
        "scratch_seed3",
        "moco_init_seed3",
        "moco_init_lr0.5_seed3",
        "moco_init_frz0_seed3",
    ]
    assert sorted(result["moco_init_vs_scratch_eer_change_percent"]["trials.txt"]) == [
        "moco_init",
        "moco_init_frz0",
        "moco_init_lr0.5",
    ]
    assert result["change_reference"] == {
        "moco_init": "scratch",
        "moco_init_lr0.5": "scratch",
        "moco_init_frz0": "scratch",
    }
    # the yaml's freeze (3 epochs) for MoCo-init, none for the --freeze_epochs=0 variant
    for system, freeze in (("moco_init_seed3", 3), ("moco_init_frz0_seed3", 0), ("scratch_seed3", 0)):
        assert json.load(open(out / system / "run_info.json"))["freeze_epochs"] == freeze, system
    assert "moco_init_frz0 vs scratch, trials.txt (mean of 2 training seeds)" in stdout
    info = json.load(open(out / "moco_init_lr0.5_seed3" / "run_info.json"))
    assert info["init_from"] == str(out / "moco") and info["encoder_lr_scale"] == 0.5
    assert "moco_init_lr0.5 vs scratch, trials.txt (mean of 2 training seeds)" in stdout


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
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = [json.loads(line) for line in open(out / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2]  # written once, by rank 0
    assert [h["encoder_frozen"] for h in history] == [True, False]
    check_metrics(out / "eval" / "metrics.json", 4)
    assert len((out / "save" / "label_encoder.txt").read_text().splitlines()) >= 4
