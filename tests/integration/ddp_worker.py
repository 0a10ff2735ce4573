"""Training worker for the multi-process tests (run directly or under torchrun).

Trains with the Folder recipe's yaml, no shuffling (rank r takes rows r, r+W, ...
so the ranks' batches together equal a single process's global batch), and
saves, per rank, the final queue and every step's loss, utterance IDs and keys.
"""

import os
import sys

import torch

from speechbrain_moco.brain import MoCoBrain
from speechbrain_moco.recipe import load_hparams, prepare_experiment, train


class RecordingBrain(MoCoBrain):
    """Keeps each step's loss, batch IDs and keys.

    With ``FREEZE_BN=1`` every batch-norm layer normalises with its (initial)
    running statistics, so a step no longer depends on how the global batch is
    split across processes and DDP must reproduce one process exactly.
    """

    def fit_batch(self, batch):
        if os.environ.get("FREEZE_BN") == "1":
            for module in self.modules.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return super().fit_batch(batch)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        norm = self.modules.mean_var_norm
        stats = (int(getattr(norm, "count", 0)),
                 getattr(norm, "glob_mean", torch.empty(0)).detach().cpu().clone())
        self.record = getattr(self, "record", []) + [
            {"loss": float(loss.detach()), "ids": list(batch.id), "keys": outputs["keys"].detach().cpu(),
             "norm": stats}
        ]


if __name__ == "__main__":
    hparams_file, run_opts, overrides, hparams = load_hparams(sys.argv[1:])
    hparams["sorting"] = "ascending"  # DistributedSampler(shuffle=False)
    hparams["train_dataloader_options"]["shuffle"] = False
    prepare_experiment(hparams, hparams_file, overrides)
    brain = train(hparams, run_opts, brain_class=RecordingBrain)
    rank = int(os.environ.get("RANK", 0))
    torch.save({"queue": brain.modules.queue.state_dict(), "steps": brain.record},
               os.path.join(hparams["output_folder"], f"rank{rank}.pt"))
