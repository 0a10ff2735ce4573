"""AtomicCheckpointer under two gloo ranks: every rank sees a checkpoint once
save_checkpoint returns, so SpeechBrain's delete_checkpoints (one collective per
checkpoint it deletes, from each rank's own listing) keeps the ranks in step."""

import os
import sys

from conftest import ROOT, run_group

WORKER = """
import datetime, os, sys, time
import torch, torch.distributed as dist
from speechbrain_moco.training import checkpoint

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
rank = dist.get_rank()
if rank == 0:  # the main rank renames its temporary folder late
    rename = os.replace
    def late(src, dst):
        time.sleep(1.0)
        rename(src, dst)
    checkpoint.os.replace = late
saver = checkpoint.AtomicCheckpointer(sys.argv[1], {"lin": torch.nn.Linear(2, 2)})
for epoch in range(4):
    saver.save_and_keep_only(meta={"epoch": epoch}, num_to_keep=2)
    seen = [None, None]
    dist.all_gather_object(seen, sorted(c.meta["epoch"] for c in saver.list_checkpoints()))
    assert seen[0] == seen[1] == list(range(max(0, epoch - 1), epoch + 1)), seen
print(f"rank {rank}: checkpoints in step", flush=True)
dist.destroy_process_group()
"""


def test_ranks_list_the_same_checkpoints_and_delete_in_step(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29538"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    code, printed = run_group(cmd + [str(script), str(tmp_path / "ckpt")], env, timeout=240)
    assert code == 0, printed[-3000:]
    assert printed.count("checkpoints in step") == 2
