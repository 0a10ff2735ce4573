"""The label-free pipeline's contract command on a tiny corpus (issue 19)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, check_metrics, run, verify

TINY_NET = "channels: 16, emb_dim: 16, n_mels: 24, batch_size: 4, crop_seconds: 0.5, num_workers: 0"


def command(corpus, out, rounds=1, moco_epochs=3):
    return [
        "recipes/Folder/SpeakerRec/label_free.py",
        "recipes/Folder/SpeakerRec/hparams/label_free.yaml",
        f"--data_folder={corpus}",
        f"--output_folder={out}",
        "--verification_file=trials.txt",
        f"--rounds={rounds}",
        "--moco_hparams=recipes/Folder/MoCo/hparams/moco_ssps.yaml",
        f"--moco_overrides={{{TINY_NET}, queue_size: 8, number_of_epochs: {moco_epochs}, "
        "ssps_epochs: 2, ssps_queue_size: 8}",
        "--pseudo_label_overrides={n_clusters: 4}",
        f"--train_overrides={{{TINY_NET}, number_of_epochs: 3, freeze_epochs: 1, margin_warmup_epochs: 1, "
        "loss_gate: auto, loss_gate_epoch: 2, loss_gate_relabel: 0.5, aam_subcenters: 3, l2sp_weight: 0.01}",
        "--device=cpu",
    ]


def test_label_free_pipeline_runs_every_stage_and_links_the_final_one(tone_corpus, tmp_path):
    out = tmp_path / "lf"
    printed = run(command(tone_corpus, out, rounds=2), timeout=900)
    assert "label-free pipeline done: 5 stages" in printed
    assert os.path.islink(out / "final") and os.readlink(out / "final") == "pl2"
    summary = json.loads((out / "stages.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["moco", "pl1_labels", "pl1", "pl2_labels", "pl2"]
    assert [m["stage"] for m in summary["metrics"]] == ["moco", "pl1", "pl2"]
    for stage in ("moco", "pl1", "pl2"):
        check_metrics(out / stage / "eval" / "metrics.json", 4)
    assert (out / "det.png").stat().st_size > 1000 and "| pl2 |" in (out / "stages.md").read_text()
    # SSPS ran in the MoCo stage; round 2 re-clustered with round 1's encoder
    history = [json.loads(line) for line in open(out / "moco" / "history.jsonl")]
    assert "ssps_coverage" in history[-1] and "ssps_coverage" not in history[0]
    clusters = json.loads((out / "pl2_labels" / "clusters.json").read_text())
    assert clusters["pretrain_path"] == str(out / "pl1")
    assert json.loads((out / "pl1" / "run_info.json").read_text())["init_from"] == str(out / "moco")
    # the label-noise measures ran: margin warmed up, the gate fitted after epoch 1 and
    # applied from epoch 2, sub-centre classifier
    history = [json.loads(line) for line in open(out / "pl1" / "history.jsonl")]
    assert history[-1]["margin"] == 0.2 and "loss_gate" in history[0]
    assert "loss_gate_kept" in history[-1] and "loss_gate_relabelled" in history[-1]
    classifier = torch.load(next((out / "pl1" / "save").glob("CKPT*/classifier.ckpt")), map_location="cpu")
    n_speakers = json.loads((out / "pl1" / "run_info.json").read_text())["n_speakers"]
    assert classifier["weight"].shape[0] == 3 * n_speakers
    # OUT/final is scored like any training run
    printed = verify(out / "final", tone_corpus, tmp_path / "ev")
    assert "EER" in printed
    # a rerun reuses every finished stage
    again = run(command(tone_corpus, out, rounds=2), timeout=300)
    assert "label-free pipeline done" in again
    assert all(json.loads((out / f"{s}.done.json").read_text())["finished"] for s in ("moco", "pl1", "pl2"))
    reused = {s["stage"]: s["reused"] for s in json.loads((out / "stages.json").read_text())["stages"]}
    assert all(reused.values())
    # a stage redone makes the later ones stale: they run again, the earlier ones are reused
    shutil.rmtree(out / "pl2_labels")
    os.remove(out / "pl2_labels.done.json")
    run(command(tone_corpus, out, rounds=2), timeout=600)
    reused = {s["stage"]: s["reused"] for s in json.loads((out / "stages.json").read_text())["stages"]}
    assert reused == {"moco": True, "pl1_labels": True, "pl1": True, "pl2_labels": False, "pl2": False}
    # another command for a stage runs it again, and every stage after it
    run(command(tone_corpus, out, rounds=2, moco_epochs=4), timeout=900)
    reused = {s["stage"]: s["reused"] for s in json.loads((out / "stages.json").read_text())["stages"]}
    assert not any(reused.values())
    assert len((out / "moco" / "train_log.txt").read_text().splitlines()) == 4


def test_label_free_round_from_a_finished_moco_run(tone_corpus, tmp_path):
    """--moco_run: no MoCo stage, round 1 clusters with the given run and starts from it."""
    moco = tmp_path / "lf" / "moco"
    run(command(tone_corpus, tmp_path / "lf", rounds=1), timeout=900)
    out = tmp_path / "from_run"
    args = [a for a in command(tone_corpus, out) if not a.startswith(("--moco_overrides", "--moco_hparams"))]
    printed = run(args + [f"--moco_run={moco}"], timeout=600)
    assert "label-free pipeline done: 2 stages" in printed
    summary = json.loads((out / "stages.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["pl1_labels", "pl1"]
    assert summary["moco_run"] == str(moco)
    assert not (out / "moco").exists()
    assert json.loads((out / "pl1" / "run_info.json").read_text())["init_from"] == str(moco)


def test_label_free_pipeline_rejects_a_missing_data_folder(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable] + command(tmp_path / "nowhere", tmp_path / "o"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "is not a folder" in proc.stderr


@pytest.mark.parametrize("rounds", [-1])
def test_label_free_pipeline_rejects_negative_rounds(tone_corpus, tmp_path, rounds):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable] + command(tone_corpus, tmp_path / "o", rounds=rounds),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "rounds=-1" in proc.stderr
