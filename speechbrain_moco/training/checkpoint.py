"""Checkpoint helpers: atomic checkpoint directories and RNG state.

SpeechBrain's ``Checkpointer`` writes the meta file first and the parameter
files after it, so a run killed while saving leaves a directory that looks
complete and fails to load. ``AtomicCheckpointer`` writes into a hidden
temporary directory and renames it into place only once every file is
written; leftovers of interrupted saves are removed at the next save.
"""

import logging
import os
import random
import shutil

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    Checkpoint,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, if_main_process
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

TMP_PREFIX = ".tmp-"


class AtomicCheckpointer(Checkpointer):
    """A ``Checkpointer`` whose checkpoints appear all at once or not at all.

    Example
    -------
    >>> import tempfile
    >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"lin": torch.nn.Linear(2, 2)})
    >>> saved = ckpt.save_checkpoint()
    >>> saved.path.name.startswith("CKPT"), (saved.path / "lin.ckpt").exists()
    (True, True)
    >>> [p.name for p in ckpt.checkpoints_dir.iterdir() if p.name.startswith(TMP_PREFIX)]
    []
    """

    def _new_checkpoint_dirpath(self):
        final = super()._new_checkpoint_dirpath()
        return final.with_name(TMP_PREFIX + final.name)

    def _custom_checkpoint_dirpath(self, name):
        final = super()._custom_checkpoint_dirpath(name)
        return final.with_name(TMP_PREFIX + final.name)

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save into a temporary directory, then rename it into place (and log that path)."""
        if if_main_process():
            for stale in self.checkpoints_dir.glob(TMP_PREFIX + CKPT_PREFIX + "*"):
                shutil.rmtree(stale, ignore_errors=True)
        # SpeechBrain logs the folder it writes: the temporary one, at DEBUG level
        ckpt = super().save_checkpoint(
            meta=meta, end_of_epoch=end_of_epoch, name=name, verbosity=logging.DEBUG
        )
        if ckpt is not None:  # the main process
            final = ckpt.path.with_name(ckpt.path.name[len(TMP_PREFIX) :])
            if final.exists():
                shutil.rmtree(final)
            os.replace(ckpt.path, final)
        # Every rank waits for the rename. SpeechBrain's delete_checkpoints lists the folder on
        # each rank and deletes through one collective per checkpoint: a rank that listed it
        # before the rename saw one checkpoint fewer, made fewer collectives and the ranks
        # deadlocked (seen: a torchrun SSPS run hung at its third end-of-epoch checkpoint).
        ddp_barrier()
        if ckpt is None:  # not the main process
            return None
        kind = "an end-of-epoch" if end_of_epoch else "an intra-epoch"
        logger.log(verbosity, "Saved %s checkpoint in %s", kind, final)
        files = {key: final / path.name for key, path in ckpt.paramfiles.items()}
        return Checkpoint(final, ckpt.meta, files)


@register_checkpoint_hooks
class RNGState:
    """Checkpointable snapshot of the Python, NumPy and torch (CPU/CUDA) RNGs."""

    @mark_as_saver
    def save(self, path):
        """Write the generator states to ``path``."""
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=None):
        """Restore the generator states saved by ``save``."""
        state = torch.load(path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
