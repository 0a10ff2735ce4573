"""Two processes on CPU (gloo): identical queues, rank-ordered keys, loss vs one process."""

import os
import sys

import pytest
import torch
from conftest import ROOT, TINY, run_group

WORKER = os.path.join("tests", "integration", "ddp_worker.py")
ARGS = [
    "recipes/Folder/MoCo/hparams/moco.yaml",
    "--channels=16",
    "--emb_dim=16",
    "--n_mels=24",
    "--queue_size=32",
    "--crop_seconds=0.5",
    "--num_workers=0",
    "--number_of_epochs=1",
    "--valid_ratio=0.1",
    "--noise_prob=0",
    "--reverb_prob=0",
    "--drop_freq_prob=0",
    "--drop_chunk_prob=0",
    "--eq_prob=0",
    "--seed=3",
    "--optimizer_step_limit=3",
]
# The Folder default normalisation is global: its running statistics must be all-reduced, so
# two processes x 4 rows see the same statistics as one process x 8 (asserted below).


def launch(cmd, corpus, out, batch_size, extra):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", FREEZE_BN="1")
    args = [f"--data_folder={corpus}", f"--output_folder={out}", f"--batch_size={batch_size}"]
    code, printed = run_group(cmd + [WORKER] + ARGS + args + extra, env, timeout=300)
    assert code == 0, printed[-3000:]


@pytest.fixture(scope="module")
def runs(tone_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]
    launch(torchrun, tone_corpus, base / "ddp", 4, ["--distributed_backend=gloo", "--device=cpu"])
    launch([sys.executable], tone_corpus, base / "single", 8, ["--device=cpu"])
    ddp = [torch.load(base / "ddp" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    single = torch.load(base / "single" / "rank0.pt", weights_only=False)
    return ddp, single


def test_queue_is_identical_on_both_ranks_and_holds_keys_in_rank_order(runs):
    ddp, _ = runs
    q0, q1 = ddp[0]["queue"], ddp[1]["queue"]
    assert torch.equal(q0["keys"], q1["keys"]) and int(q0["ptr"]) == int(q1["ptr"])
    steps = len(ddp[0]["steps"])
    assert steps == 3 and int(q0["ptr"]) == steps * 8 and int(q0["filled"]) == steps * 8
    expected = torch.cat(
        [torch.cat([ddp[0]["steps"][s]["keys"], ddp[1]["steps"][s]["keys"]]) for s in range(steps)]
    )
    assert torch.allclose(q0["keys"][: steps * 8], expected, atol=1e-6)


def test_ranks_split_the_single_process_global_batch(runs):
    ddp, single = runs
    for s in range(3):
        union = set(ddp[0]["steps"][s]["ids"]) | set(ddp[1]["steps"][s]["ids"])
        assert union == set(single["steps"][s]["ids"]) and len(union) == 8


def test_losses_and_keys_match_single_process(runs):
    """Two processes x 4 vs one process x 8 on the same global batches.

    Batch norm is frozen in these runs (see ddp_worker.py): with live BN each
    process normalises with the statistics of its own 4 samples, which at
    initialisation moved the first loss from 4.49 (one process) to 3.29 (mean
    of two), a difference of definition rather than of implementation. Frozen,
    the ranks' mean loss must equal the single-process loss at every step (DDP
    averages the gradients of the per-rank means = the gradient of the global
    mean), and the shuffled-then-unshuffled keys must equal the single-process
    keys of the same utterances. Tolerance 1e-4: float32 reductions in a
    different order over 3 optimiser steps.
    """
    ddp, single = runs
    for s in range(3):
        count, mean = single["steps"][s]["norm"]
        # only training crops are counted, the same number every step (the start-up encoder
        # check once folded 1 s of silence per process into them)
        assert count == (s + 1) * single["steps"][0]["norm"][0] == (s + 1) * 16 * 51
        for r in (0, 1):  # the global normalisation's statistics: same frames, same values
            assert ddp[r]["steps"][s]["norm"][0] == count
            assert torch.allclose(ddp[r]["steps"][s]["norm"][1], mean, atol=1e-4)
        mean_ddp = (ddp[0]["steps"][s]["loss"] + ddp[1]["steps"][s]["loss"]) / 2
        assert mean_ddp == pytest.approx(single["steps"][s]["loss"], rel=1e-4, abs=1e-4)
    ref = dict(zip(single["steps"][0]["ids"], single["steps"][0]["keys"]))
    for r in (0, 1):
        for uid, key in zip(ddp[r]["steps"][0]["ids"], ddp[r]["steps"][0]["keys"]):
            assert torch.allclose(key, ref[uid], atol=1e-5)


def test_split_batchnorm_on_one_process_gives_the_keys_of_as_many_gloo_ranks(tmp_path):
    """bn_splits=2 on one process = 2 processes with per-process batch norm and shuffle-BN."""
    worker = os.path.join("tests", "integration", "split_bn_worker.py")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534"]
    for cmd, out in ((torchrun + [worker], "ddp"), ([sys.executable, worker, "--splits=2"], "single")):
        os.makedirs(tmp_path / out)
        code, printed = run_group(cmd + [f"--out={tmp_path / out}"], env, timeout=300)
        assert code == 0, printed[-3000:]
    ddp = [torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1)]
    single = torch.load(tmp_path / "single" / "rank0.pt")
    for name in ("queries", "keys"):
        assert torch.allclose(torch.cat([d[name] for d in ddp]), single[name], atol=1e-5), name
    mean = (ddp[0]["running_mean"] + ddp[1]["running_mean"]) / 2
    assert torch.allclose(mean, single["running_mean"], atol=1e-6)


def test_end_of_run_scoring_without_validation_under_torchrun(tone_corpus, tmp_path):
    """Issue 18, defect 7: with no validation pass the last forward of the DDP module was a
    training one, and scoring on rank 0 alone through it waited on rank 1 to sync buffers: a
    hang, or here "Connection closed by peer" once rank 1 had exited."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29535"]
    cmd += ["recipes/Folder/MoCo/train_moco.py", "recipes/Folder/MoCo/hparams/moco.yaml"] + TINY
    cmd += ["--valid_ratio=0"]
    cmd += [f"--data_folder={tone_corpus}", f"--output_folder={out}", "--verification_file=trials.txt"]
    cmd += ["--distributed_backend=gloo"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    code, printed = run_group(cmd, env, timeout=240)
    assert code == 0, printed[-3000:]
    assert len((out / "eval" / "scores.txt").read_text().splitlines()) == 4
    assert "EER" in printed


def test_two_gloo_ranks_hold_the_same_ssps_memories_and_clusters(tone_corpus, tmp_path):
    """Every rank writes the global batch's reference embeddings and keys, k-means is
    broadcast: both ranks hold the same memories, queues and clusters (moco_ssps.yaml)."""
    args = [a for a in ARGS if not a.startswith(("--number_of_epochs", "--optimizer_step_limit"))]
    args[0] = "recipes/Folder/MoCo/hparams/moco_ssps.yaml"
    args += ["--number_of_epochs=3", "--ssps_epochs=2", "--ssps_cluster_size=3", "--ssps_queue_size=8"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29536"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    cmd = torchrun + [WORKER] + args
    cmd += [f"--data_folder={tone_corpus}", f"--output_folder={tmp_path}", "--batch_size=4"]
    cmd += ["--distributed_backend=gloo", "--device=cpu"]
    code, printed = run_group(cmd, env, timeout=300)
    assert code == 0, printed[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["ssps"] for r in (0, 1)]
    assert bool(ranks[0]["written"].all()) and ranks[0]["reference"].shape[0] == 32
    assert int(ranks[0]["clustered_epoch"]) == 3 and ranks[0]["centroids"].shape[0] == round(32 / 3)
    assert bool((ranks[0]["pos_slots"] >= 0).all())
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name


def test_a_skipped_last_micro_batch_keeps_the_ranks_in_step(tone_corpus, tmp_path):
    """Accumulation 2, rank 0's loss NaN on a window's last micro-batch: the window steps on
    the gradients averaged over the ranks (DDP's sync ran in the skipped backward)."""
    args = [a for a in ARGS if not a.startswith("--optimizer_step_limit")]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29537"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", NAN_STEP="2")
    cmd = torchrun + [WORKER] + args + ["--grad_accumulation_factor=2", "--batch_size=4"]
    cmd += [f"--data_folder={tone_corpus}", f"--output_folder={tmp_path}", "--distributed_backend=gloo"]
    code, printed = run_group(cmd + ["--device=cpu"], env, timeout=300)
    assert code == 0, printed[-3000:]
    assert "non-finite loss" in printed
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["encoder"] for r in (0, 1)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name
