"""Training worker for the multi-process tests (run directly or under torchrun).

Trains with the Folder recipe's yaml, no shuffling (rank r takes rows r, r+W, ...
so the ranks' batches together equal a single process's global batch), and
saves, per rank, the final queue, the SSPS memory and every step's loss, utterance IDs and
keys.
"""

import importlib.util
import os
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_moco.dataio import run_preparation

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC = importlib.util.spec_from_file_location(
    "train_moco", os.path.join(ROOT, "recipes", "Folder", "MoCo", "train_moco.py")
)
recipe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(recipe)  # the recipe's dataio_prep (its __main__ block does not run)


class Recording:
    """Mixed into the yaml's Brain (MoCo or SSPS): keeps each step's loss, batch IDs and keys.

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

    def compute_objectives(self, outputs, batch, stage):
        """``NAN_STEP=N``: rank 0's loss at training step N is NaN (every rank skips it)."""
        loss = super().compute_objectives(outputs, batch, stage)
        nan_step = int(os.environ.get("NAN_STEP", 0))
        if stage == sb.Stage.TRAIN and self.step == nan_step and int(os.environ.get("RANK", 0)) == 0:
            return loss * float("nan")
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        norm = self.modules.mean_var_norm
        stats = (
            int(getattr(norm, "count", 0)),
            getattr(norm, "glob_mean", torch.empty(0)).detach().cpu().clone(),
        )
        self.record = getattr(self, "record", []) + [
            {
                "loss": float(loss.detach()),
                "ids": list(batch.id),
                "keys": outputs["keys"].detach().cpu(),
                "norm": stats,
            }
        ]


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    hparams["sorting"] = "ascending"  # DistributedSampler(shuffle=False)
    hparams["train_dataloader_options"]["shuffle"] = False
    sb.create_experiment_directory(hparams["output_folder"], hparams_file, overrides)
    prepared, _ = run_preparation(hparams["prepare_data"], hparams["data_folder"], hparams["manifest_folder"])
    train_set, valid_set, loaders = recipe.dataio_prep(hparams, prepared["data_root"])
    brain_class = type("RecordingBrain", (Recording, hparams["brain_class"]), {})
    brain = brain_class(hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"])
    brain.fit(hparams["epoch_counter"], train_set, valid_set, **loaders)
    rank = int(os.environ.get("RANK", 0))
    torch.save(
        {
            "queue": brain.modules.queue.state_dict(),
            "ssps": brain.modules.ssps.state_dict() if "ssps" in brain.modules else None,
            "encoder": brain.modules.embedding_model.state_dict(),
            "steps": brain.record,
        },
        os.path.join(hparams["output_folder"], f"rank{rank}.pt"),
    )
