"""Training on several unlabelled corpora at once, and surviving bad audio.

- ``multi_source_dataset``: one two-view dataset per source (each with its own
  ``data_root``), concatenated, each item tagged with its source name, and a
  ``ReproducibleWeightedRandomSampler`` that draws a crop pair from source ``s``
  with probability ``weight_s / sum(weights)`` (uniform within a source).
- ``SkippingDataset``: an utterance that cannot be read during training (file
  vanished, corrupt, wrong rate) is skipped: it is written to a report file
  with the reason, counted, and replaced by the next readable utterance, so one
  bad file never stops a long run. Too many failures in a row still raise.
"""

import os

import torch
from speechbrain.dataio.sampler import ReproducibleWeightedRandomSampler
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import AudioError
from speechbrain_moco.dataio.datasets import drop_short, two_view_dataset

logger = get_logger(__name__)


class SkippingDataset(torch.utils.data.Dataset):
    """Wrap a dataset; unreadable items are reported, counted and replaced.

    Arguments
    ---------
    dataset : torch.utils.data.Dataset
        Items are dicts with an ``id`` (DynamicItemDataset).
    report_path : str
        Lines ``id<TAB>reason`` are appended here.
    max_in_a_row : int
        Raise after this many consecutive unreadable items.
    """

    errors = (AudioError, FileNotFoundError, ValueError, RuntimeError)

    def __init__(self, dataset, report_path, max_in_a_row=50):
        self.dataset = dataset
        self.report_path = report_path
        self.max_in_a_row = max_in_a_row
        self.reported = set()  # per process: each bad utterance is reported once

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        for attempt in range(self.max_in_a_row):
            i = (index + attempt) % len(self.dataset)
            try:
                return self.dataset[i]
            except self.errors as err:
                self.report(i, err)
        raise RuntimeError(
            f"{self.max_in_a_row} unreadable utterances in a row from index {index}; see {self.report_path}"
        )

    def report(self, index, err):
        """Append one skipped item to the report and log it."""
        uid = self.item_id(index)
        if uid in self.reported:
            return
        self.reported.add(uid)
        reason = str(err).replace("\n", " ")[:300]
        logger.warning("skipping unreadable utterance %s: %s", uid, reason)
        os.makedirs(os.path.dirname(os.path.abspath(self.report_path)), exist_ok=True)
        with open(self.report_path, "a", encoding="utf-8") as f:
            f.write(f"{uid}\t{reason}\n")

    def count(self):
        """Distinct utterances skipped so far, by every process (read from the report)."""
        return count_skipped(self.report_path)

    def item_id(self, index):
        """Utterance ID of an index, without reading its audio."""
        data = self.dataset
        if isinstance(data, torch.utils.data.ConcatDataset):
            j = int(torch.searchsorted(torch.tensor(data.cumulative_sizes), index, right=True))
            index -= data.cumulative_sizes[j - 1] if j > 0 else 0
            data = data.datasets[j]
        return data.data_ids[index] if hasattr(data, "data_ids") else str(index)


def multi_source_dataset(sources, two_crops, seed=0, min_seconds=0.0, report_folder=None):
    """Concatenate several two-view datasets and build their weighted sampler.

    Arguments
    ---------
    sources : list of dict
        Each ``{"name", "annotation", "data_folder", "weight"}``.
    two_crops : speechbrain_moco.dataio.TwoCrops
        The crop drawer shared by all sources.
    seed : int
        Seed of the sampler (``set_epoch`` varies it per epoch).
    min_seconds : float
        Utterances shorter than this are left out (:func:`drop_short`), listed in
        ``<report_folder>/short_utterances_<name>.txt``.
    report_folder : str, optional
        Where those lists go (none written without it).

    Returns
    -------
    dataset : torch.utils.data.ConcatDataset
    sampler : ReproducibleWeightedRandomSampler
        One epoch draws as many crop pairs as there are utterances in total.
    """
    parts, weights = [], []
    total_weight = float(sum(s["weight"] for s in sources))
    for src in sources:
        if src["weight"] <= 0:
            raise ValueError(f"source {src['name']}: weight must be > 0, got {src['weight']}")
        data = two_view_dataset(src["annotation"], src["data_folder"], two_crops, source=src["name"])
        report = report_folder and os.path.join(report_folder, f"short_utterances_{src['name']}.txt")
        data, _ = drop_short(data, min_seconds, report)
        if len(data) == 0:
            raise ValueError(f"source {src['name']}: {src['annotation']} has no utterance")
        parts.append(data)
        weights += [src["weight"] / total_weight / len(data)] * len(data)
    dataset = torch.utils.data.ConcatDataset(parts)
    sampler = ReproducibleWeightedRandomSampler(
        weights, num_samples=len(dataset), replacement=True, seed=seed
    )
    return dataset, sampler


def count_skipped(report_path):
    """Number of distinct utterances listed in a skip report (0 when there is none)."""
    if not os.path.exists(report_path):
        return 0
    with open(report_path, encoding="utf-8") as f:
        return len({line.split("\t")[0] for line in f if line.strip()})
