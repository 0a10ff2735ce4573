"""A training process killed with SIGKILL mid-epoch resumes to the same final state."""

import os
import signal
import subprocess
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ARGS = [
    "recipes/Folder/MoCo/train_moco.py",
    "recipes/Folder/MoCo/hparams/moco.yaml",
    "--channels=16",
    "--emb_dim=16",
    "--n_mels=24",
    "--batch_size=4",
    "--queue_size=12",
    "--crop_seconds=0.5",
    "--num_workers=0",
    "--number_of_epochs=3",
    "--valid_ratio=0.1",
    "--seed=5",
    "--ckpt_interval_steps=2",
    "--device=cpu",
]


def command(corpus, out):
    return [sys.executable] + ARGS + [f"--data_folder={corpus}", f"--output_folder={out}"]


def final_state(out):
    save = os.path.join(out, "save")
    ckpts = sorted(d for d in os.listdir(save) if d.startswith("CKPT"))
    last = max(ckpts, key=lambda d: os.path.getmtime(os.path.join(save, d, "CKPT.yaml")))
    return {
        name: torch.load(os.path.join(save, last, f"{name}.ckpt"), weights_only=False)
        for name in ("embedding_model", "key_model", "queue")
    }


def intra_epoch_checkpoint_in_epoch(out, epoch):
    save = os.path.join(out, "save")
    if not os.path.isdir(save):
        return False
    for d in os.listdir(save):
        meta = os.path.join(save, d, "CKPT.yaml")
        if d.startswith("CKPT") and os.path.exists(meta):
            text = open(meta).read()
            if "end-of-epoch: false" in text and os.path.exists(os.path.join(save, d, "counter.ckpt")):
                if open(os.path.join(save, d, "counter.ckpt")).read().strip() == str(epoch):
                    return True
    return False


def test_sigkill_mid_epoch_then_rerun_matches_uninterrupted(tone_corpus, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(command(tone_corpus, ref), cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(
        command(tone_corpus, killed), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not intra_epoch_checkpoint_in_epoch(killed, 2):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "eval" / "metrics.json").exists()
    done = subprocess.run(
        command(tone_corpus, killed), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = final_state(ref), final_state(killed)
    for name in a:
        for key, value in a[name].items():
            assert torch.allclose(value.float(), b[name][key].float(), atol=1e-6), (name, key)
