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

Command-line modules: ``python -m speechbrain_moco.export``, ``python -m
speechbrain_moco.verify`` (one pair, with an exported model) and ``python -m
speechbrain_moco.plots``. The recipes (``recipes/<Corpus>/<Task>/``) hold the jobs.
"""

__version__ = "0.2.0"
