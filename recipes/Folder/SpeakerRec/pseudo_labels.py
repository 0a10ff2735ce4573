#!/usr/bin/env python3
"""Recipe for label-free pseudo speakers: cluster a trained encoder's embeddings of the
training utterances and write manifests the supervised recipe trains on.

To run::

    python recipes/Folder/SpeakerRec/pseudo_labels.py recipes/Folder/SpeakerRec/hparams/pseudo_labels.yaml \
        --pretrain_path=MOCO_OUT --output_folder=PL [--n_clusters=N]

then ``train_speaker_embeddings.py ... --train_annotation=PL/train.csv
--valid_annotation=PL/valid.csv``. ``MOCO_OUT`` is any training ``--output_folder``
(MoCo or a previous round); its ``run_info.json`` says which manifests and data it
trained on. Writes ``PL/train_all.csv`` / ``valid_all.csv`` (every row, relabelled),
``PL/train.csv`` / ``valid.csv`` (the rows the purity filter keeps) and
``PL/clusters.json`` (sizes, timings, and NMI / purity against the manifest's own
``spk_id`` as a report only: no label is used).
"""

import json
import os
import sys
import time

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.cli import check_device, device_argument, user_errors
from speechbrain_moco.dataio import read_csv, utterance_dataset
from speechbrain_moco.dataio.bad_audio import REPORT_NAME, usable_rows
from speechbrain_moco.dataio.manifest import write_csv
from speechbrain_moco.hparams_io import load_yaml
from speechbrain_moco.pseudo_labels import pseudo_label_manifests
from speechbrain_moco.run_folder import read_run_info
from speechbrain_moco.verification import cached_embeddings, load_trained_encoder

logger = get_logger(__name__)


def embed_rows(csv_path, rows, data_folder, embed_fn, sample_rate, cache, device, batch_size):
    """(N, D) embeddings of a manifest's ``rows``, in their order (cached in ``cache``)."""
    data = utterance_dataset(csv_path, data_folder, sample_rate)
    ids, emb = cached_embeddings(data, embed_fn, cache, embed_fn.checkpoint, device, batch_size, True)
    index = {uid: i for i, uid in enumerate(ids)}
    return emb[torch.tensor([index[r["ID"]] for r in rows])]


if __name__ == "__main__":
    with user_errors("pseudo_labels.py"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        # before SpeechBrain initialises CUDA: a machine without it gets one line
        check_device(device_argument(sys.argv[1:]))
        hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
        hparams = load_yaml(hparams_file, overrides)  # a mistyped --key: an error naming the closest
        run = hparams["pretrain_path"]
        if run is None:
            raise ValueError("--pretrain_path (the MoCo or previous-round --output_folder) is required")
        info = read_run_info(run)
        train_csv = hparams["train_annotation"] or info["train_annotation"]
        valid_csv = hparams["valid_annotation"] or info["valid_annotation"]
        data_folder = hparams["data_folder"] or info["data_folder"]
        out = hparams["output_folder"]
        os.makedirs(out, exist_ok=True)
        device = run_opts.get("device", "cpu")
        embed_fn, train_hp = load_trained_encoder(
            run, device, hparams["average_checkpoints"], hparams["crop_seconds"]
        )

        # Embeddings of every training (then validation) utterance of the run's manifests
        train_rows, fields = read_csv(train_csv, required=("ID", "spk_id"))
        valid_rows = read_csv(valid_csv, required=("ID", "spk_id"))[0] if valid_csv else []
        # unusable audio: left out of the pseudo-labels, named in OUT/skipped_audio.txt
        report_path = os.path.join(out, REPORT_NAME)
        rate = train_hp["sample_rate"]
        train_rows, bad = usable_rows(train_rows, data_folder, rate, report_path, "training utterances")
        if bad:
            train_csv = os.path.join(out, "train_usable.csv")
            write_csv(train_rows, fields, train_csv)
        if valid_rows:
            kept, bad_valid = usable_rows(valid_rows, data_folder, rate, report_path, "validation utterances")
            if bad_valid:
                valid_rows, valid_csv = kept, os.path.join(out, "valid_usable.csv")
                write_csv(valid_rows, fields, valid_csv)
        start = time.time()
        parts = [
            embed_rows(
                path,
                rows,
                data_folder,
                embed_fn,
                train_hp["sample_rate"],
                os.path.join(out, f"{name}_embeddings.pt"),
                device,
                hparams["batch_size"],
            )
            for name, path, rows in (("train", train_csv, train_rows), ("valid", valid_csv, valid_rows))
            if rows
        ]
        extract_seconds = time.time() - start

        # Cluster, filter, relabel, write the manifests and the report
        report = pseudo_label_manifests(
            torch.cat(parts).numpy(),
            train_rows,
            valid_rows,
            fields,
            out,
            hparams["n_clusters"],
            hparams["cluster_method"],
            hparams["keep_ratio"],
            hparams["min_cluster_size"],
            hparams["seed"],
            hparams["report_labels"],
            hparams["overcluster_factor"],
        )
        report.update(
            pretrain_path=os.path.abspath(run),
            encoder=embed_fn.checkpoint,
            extract_seconds=round(extract_seconds, 3),
            data_folder=data_folder,
        )
        # a report against the corpus's speaker folders (never used to cluster): a count far from
        # them says the clustering, not the encoder, is what to look at
        folders = len({r["spk_id"] for r in train_rows + valid_rows if r["spk_id"]})
        if folders:
            report["n_speaker_folders"] = folders
            if not 0.8 * folders <= report["n_clusters"] <= 1.2 * folders:
                logger.warning(
                    "%d pseudo speakers for %d speaker folders in the manifests: if the folders are "
                    "speakers, the clusters merge or split them (clusters.json: count_by_p)",
                    report["n_clusters"],
                    folders,
                )
        tmp = os.path.join(out, "clusters.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, os.path.join(out, "clusters.json"))
        print(
            json.dumps(
                {
                    k: report[k]
                    for k in (
                        "n_clusters",
                        "n_speaker_folders",
                        "train_kept",
                        "train_rows",
                        "train_speakers",
                        "quality_all",
                    )
                    if k in report
                }
            )
        )
