"""speechbrain-moco: speaker embeddings without labels by Momentum Contrast, the SpeechBrain way.

Subpackages:

- :mod:`speechbrain_moco.moco`: the method (key queue, momentum update, InfoNCE, heads,
  distributed helpers);
- :mod:`speechbrain_moco.training`: the Brains (MoCo, supervised AAM-softmax), checkpoints,
  schedules, start-up checks, ``init_from``;
- :mod:`speechbrain_moco.dataio`: audio, manifests, trial lists, crops, datasets,
  augmentation;
- :mod:`speechbrain_moco.verification`: embeddings, back-ends, score normalisation,
  metrics, plots, export;
- :mod:`speechbrain_moco.pseudo_labels`: label-free pseudo speakers.

Importing the package quiets three log lines of SpeechBrain and matplotlib that would
mislead or flood a run's ``log.txt`` (see below). Command-line modules:
``python -m speechbrain_moco.export``, ``python -m speechbrain_moco.verify`` (one pair,
with an exported model) and ``python -m speechbrain_moco.plots``. The recipes
(``recipes/<Corpus>/<Task>/``) hold the jobs.
"""

import logging

__version__ = "0.2.0"


class _DropMessages(logging.Filter):
    """Drops log records whose message contains one of ``fragments``."""

    def __init__(self, *fragments):
        super().__init__()
        self.fragments = fragments

    def filter(self, record):
        return not any(f in record.getMessage() for f in self.fragments)


# SpeechBrain notes at import that torchvision is missing: it concerns its sample logger,
# not this toolkit's figures (matplotlib); and it warns at every checkpoint that a MoCo v1
# projection head (an identity) has no weights to save. matplotlib's font lookup logs at
# DEBUG, which SpeechBrain's log.txt records.
logging.getLogger("speechbrain.utils.train_logger").addFilter(_DropMessages("torchvision is not available"))
logging.getLogger("speechbrain.utils.checkpoints").addFilter(_DropMessages("Saving an empty state_dict"))
logging.getLogger("matplotlib").setLevel(logging.WARNING)
