#!/usr/bin/env python3
"""Label-free pseudo speakers for the supervised recipe (see speechbrain_moco.pseudo_labels).

Run::

    python recipes/Folder/SpeakerRec/pseudo_labels.py recipes/Folder/SpeakerRec/hparams/pseudo_labels.yaml \
        --pretrain_path=MOCO_OUT --output_folder=PL [--n_clusters=N]
"""

import json
import sys

from speechbrain_moco.pseudo_labels import run_pseudo_labels

if __name__ == "__main__":
    report = run_pseudo_labels(sys.argv[1:])
    print(json.dumps({k: report[k] for k in ("n_clusters", "train_kept", "train_rows",
                                              "train_speakers", "quality_all") if k in report}))
