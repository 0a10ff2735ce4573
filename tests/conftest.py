"""Shared fixtures: tiny corpora generated under tmp paths, never committed."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TINY = [
    "--channels=16",
    "--emb_dim=16",
    "--n_mels=24",
    "--batch_size=4",
    "--queue_size=8",
    "--crop_seconds=0.5",
    "--num_workers=0",
    "--number_of_epochs=1",
    "--device=cpu",
]
SHARED_DATA = os.environ.get(
    "SBMOCO_SHARED_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
)


def write_tone_corpus(root, n_speakers=4, n_utts=4, seconds=1.0, sample_rate=16000, seed=0):
    """Folder-per-speaker corpus of noisy tones.

    The speaker sets the frequency range; every utterance has its own exact
    frequency and harmonic mix, so instances are distinguishable (MoCo's task).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    for s in range(n_speakers):
        os.makedirs(os.path.join(root, f"spk{s}"), exist_ok=True)
        for u in range(n_utts):
            f0 = (120 + 60 * s) * (1 + 0.15 * rng.uniform(-1, 1))
            x = 0.3 * np.sin(2 * np.pi * f0 * t)
            x += rng.uniform(0, 0.3) * np.sin(2 * np.pi * 2 * f0 * t + rng.uniform(0, 6))
            x += rng.uniform(0, 0.2) * np.sin(2 * np.pi * 3 * f0 * t + rng.uniform(0, 6))
            x += 0.02 * rng.standard_normal(t.size)
            sf.write(os.path.join(root, f"spk{s}", f"u{u}.wav"), x.astype(np.float32), sample_rate)
    with open(os.path.join(root, "trials.txt"), "w") as f:
        f.write(f"1 spk{n_speakers - 1}/u0.wav spk{n_speakers - 1}/u1.wav\n")
        f.write(f"0 spk{n_speakers - 1}/u0.wav spk{n_speakers - 2}/u1.wav\n")
        f.write(f"1 spk{n_speakers - 2}/u2.wav spk{n_speakers - 2}/u3.wav\n")
        f.write(f"0 spk{n_speakers - 2}/u2.wav spk{n_speakers - 1}/u3.wav\n")
    return root


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory):
    """A 6-speaker x 6-utterance corpus of 1 s tones with a 4-line trial list."""
    return write_tone_corpus(str(tmp_path_factory.mktemp("tones")), n_speakers=6, n_utts=6)


@pytest.fixture(scope="session")
def shared_speech():
    """Path of ../shared/data/speechocean762_dev; skips when absent."""
    path = os.path.join(SHARED_DATA, "speechocean762_dev")
    if not os.path.isfile(os.path.join(path, "trials.txt")):
        pytest.skip(f"shared speech corpus not found at {path}")
    return os.path.abspath(path)


def load_recipe(*parts):
    """A recipe script imported as a module (its ``__main__`` block does not run), so a test
    can use the recipe's own ``dataio_prep``: e.g. ``load_recipe("Folder", "MoCo", "train_moco.py")``."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "recipes", *parts)
    spec = importlib.util.spec_from_file_location(os.path.splitext(parts[-1])[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args, timeout=600, cwd=ROOT):
    """Run ``python ARGS`` from the repository root (the recipes' own command lines); the
    exit status must be 0. Returns what it printed."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def run_group(cmd, env, timeout):
    """Run ``cmd`` (e.g. torchrun and its workers) in a session of its own; on a timeout kill
    the whole group, so a hung collective fails the test without leaving workers behind.
    Returns the exit status and what it printed (stdout and stderr together)."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        printed, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        printed, _ = proc.communicate()
        raise AssertionError(f"hung for {timeout} s, killed:\n{printed[-3000:]}") from None
    return proc.returncode, printed


def check_metrics(path, n_trials):
    """A ``metrics.json`` with every metric, ``n_trials`` trials, an EER in [0, 100] and the
    95 % intervals of EER and minDCF(0.01) (bootstrap over the list's speakers)."""
    metrics = json.load(open(path))
    for key in ("EER", "minDCF_p0.01", "minDCF_p0.05", "n_trials", "EER_ci95", "minDCF_p0.01_ci95"):
        assert key in metrics
    assert metrics["n_trials"] == n_trials
    assert 0.0 <= metrics["EER"] <= 100.0
    low, high = metrics["EER_ci95"]
    assert 0.0 <= low <= high <= 100.0 and metrics["ci_method"] == "speaker"
    return metrics


def verify(
    pretrain,
    data_folder,
    out,
    *extra,
    yaml="verification_cosine.yaml",
    trials="trials.txt",
    recipe="recipes/Folder/MoCo",
    timeout=600,
):
    """A recipe's ``verify.py`` on a training run (cosine by default); returns what it printed."""
    return run(
        [
            f"{recipe}/verify.py",
            f"{recipe}/hparams/{yaml}",
            f"--data_folder={data_folder}",
            f"--verification_file={trials}",
            f"--pretrain_path={pretrain}",
            f"--output_folder={out}",
            "--device=cpu",
            *extra,
        ],
        timeout=timeout,
    )


def train_moco(
    data_folder, out, *extra, yaml="moco.yaml", trials="trials.txt", recipe="recipes/Folder/MoCo", base=TINY
):
    """A MoCo recipe on ``data_folder`` (``trials`` scored; None: no list) with the settings
    of ``base`` unless ``extra`` overrides them; returns what it printed."""
    keys = {a.split("=", 1)[0] for a in extra}
    args = [a for a in base if a.split("=", 1)[0] not in keys] + list(extra)
    listed = [f"--verification_file={trials}"] if trials else []
    return run(
        [
            f"{recipe}/train_moco.py",
            f"{recipe}/hparams/{yaml}",
            f"--data_folder={data_folder}",
            f"--output_folder={out}",
        ]
        + listed
        + args
    )


def pytest_collection_modifyitems(items):
    """Integration tests are ``slow`` (left out by ``-m "not slow"``) unless marked ``smoke``."""
    for item in items:
        if "integration" in item.path.parts and "smoke" not in item.keywords:
            item.add_marker(pytest.mark.slow)
