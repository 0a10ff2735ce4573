"""Data pipelines: two random crops per utterance for MoCo, full utterances for tests.

Crops are drawn from a random generator seeded by ``(seed, epoch, utterance
ID)``, so an epoch's crops are the same whether the run was interrupted or
not, and whatever the number of loader workers.
"""

import math
import os
import random
import zlib

import speechbrain as sb
import torch

from speechbrain_moco.audio import audio_frames, load_audio


class TwoCrops:
    """Draw two random crops of ``crop_seconds`` from one utterance.

    ``n_views=1`` draws a single crop (the supervised trainer's pipeline).

    Utterances shorter than a crop are wrapped around (tiled from a random
    offset) to the crop length, never dropped.

    ``max_overlap`` (two views only) bounds how much of a crop the other crop
    may share: two crops that share audio can be matched on their common words
    instead of on the voice, a shortcut that short utterances make common (2 s
    crops of a 3.5 s utterance share 1.5 s on average). Pairs are drawn
    uniformly among those that respect the bound; an utterance too short for
    it gets its two crops as far apart as it allows (its first and last
    ``crop_seconds``, in random order). 1.0 = no bound (independent offsets).

    Arguments
    ---------
    crop_seconds : float
        Crop length in seconds.
    sample_rate : int
        Audio sample rate.
    seed : int
        Base seed of the crop generator.
    n_views : int
        Crops drawn per utterance (2 for MoCo).
    max_overlap : float
        Largest shared fraction of a crop between the two views, in [0, 1].

    Example
    -------
    >>> crops = TwoCrops(0.5, 16000, seed=1)
    >>> crops.offsets("utt1", 16000) == crops.offsets("utt1", 16000)
    True
    >>> crops.set_epoch(2); crops.offsets("utt1", 16000) == TwoCrops(0.5, 16000, 1).offsets("utt1", 16000)
    False
    >>> a, b = TwoCrops(0.5, 16000, seed=1, max_overlap=0.0).offsets("utt1", 16000)
    >>> abs(a - b) >= 8000
    True
    """

    def __init__(self, crop_seconds=2.0, sample_rate=16000, seed=1234, n_views=2, max_overlap=1.0):
        if crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be > 0, got {crop_seconds}")
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        if not 0.0 <= float(max_overlap) <= 1.0:
            raise ValueError(f"max_overlap must be in [0, 1], got {max_overlap}")
        self.n_views = int(n_views)
        self.max_overlap = float(max_overlap)
        self.crop = int(round(crop_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.seed = seed
        self.epoch = 0
        self.audio_cache = None  # an AudioCache: crops are sliced from its memory map

    def set_epoch(self, epoch):
        """Select the epoch whose crops are drawn (called by the Brain)."""
        self.epoch = int(epoch)

    def offsets(self, uid, n_samples):
        """``n_views`` crop offsets in ``[0, n_samples - crop]`` (or wrap offsets)."""
        rng = random.Random(zlib.crc32(f"{self.seed}:{self.epoch}:{uid}".encode()))
        high = max(n_samples - self.crop, 0) if n_samples >= self.crop else n_samples - 1
        if self.n_views == 2 and self.max_overlap < 1.0 and n_samples >= self.crop:
            return self._separated_pair(rng, high)
        return tuple(rng.randint(0, high) for _ in range(self.n_views))

    def _separated_pair(self, rng, high):
        """Two offsets in ``[0, high]`` at least ``(1 - max_overlap) x crop`` apart.

        Uniform over the valid pairs: the gap ``d`` has density proportional to
        ``high - d`` (the number of placements of a pair with that gap), drawn by
        inverting its CDF; the lower offset is then uniform in ``[0, high - d]``.
        """
        min_gap = int(math.ceil(self.crop * (1.0 - self.max_overlap)))
        if high <= min_gap:  # too short: as far apart as the utterance allows
            pair = (0, high)
        else:
            span = high - min_gap
            gap = high - int(span * math.sqrt(rng.random()))
            low = rng.randint(0, high - gap)
            pair = (low, low + gap)
        return pair if rng.random() < 0.5 else pair[::-1]

    def __call__(self, path, start, stop, uid):
        """Return ``n_views`` (crop,) float tensors of one utterance."""
        cache = self.audio_cache
        if cache is not None and uid in cache:  # same crops as from disk, no decoding
            n = cache.length(uid)
            if n >= self.crop:
                return [cache.crop(uid, off, self.crop) for off in self.offsets(uid, n)]
            tiled = cache.crop(uid, 0, n).repeat(self.crop // n + 2)
            return [tiled[off: off + self.crop].clone() for off in self.offsets(uid, n)]
        start = int(start)
        stop = int(stop) if int(stop) > 0 else audio_frames(path)
        n = stop - start
        if n <= 0:
            raise ValueError(f"{uid}: empty segment {start}:{stop} of {path}")
        views = []
        if n >= self.crop:
            for off in self.offsets(uid, n):
                stop_at = start + off + self.crop
                views.append(load_audio(path, self.sample_rate, start=start + off, stop=stop_at))
        else:
            wav = load_audio(path, self.sample_rate, start=start, stop=stop)
            reps = self.crop // wav.numel() + 2
            tiled = wav.repeat(reps)
            for off in self.offsets(uid, n):
                views.append(tiled[off : off + self.crop].clone())
        return views


def two_view_dataset(csv_path, data_folder, two_crops):
    """DynamicItemDataset of a manifest yielding ``id``, ``view1``, ``view2``."""
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements={"data_root": data_folder}
    )

    # plain functions, not a generator: an unreadable file must leave the
    # pipeline usable for the next item (SkippingDataset relies on it)
    @sb.utils.data_pipeline.takes("id", "wav", "start", "stop")
    @sb.utils.data_pipeline.provides("views")
    def crops(uid, wav, start, stop):
        return two_crops(wav, start, stop, uid)

    @sb.utils.data_pipeline.takes("views")
    @sb.utils.data_pipeline.provides("view1")
    def first(views):
        return views[0]

    @sb.utils.data_pipeline.takes("views")
    @sb.utils.data_pipeline.provides("view2")
    def second(views):
        return views[1]

    for item in (crops, first, second):
        data.add_dynamic_item(item)
    data.set_output_keys(["id", "view1", "view2"])
    return data


def labelled_crop_dataset(csv_path, data_folder, crops, label_encoder):
    """DynamicItemDataset of one random crop ``sig`` and ``spk_id_encoded`` per row.

    ``crops`` is a ``TwoCrops(n_views=1)``; ``label_encoder`` a fitted
    SpeechBrain ``CategoricalEncoder`` (a speaker it does not know is an error
    naming the manifest).
    """
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements={"data_root": data_folder}
    )

    @sb.utils.data_pipeline.takes("id", "wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def crop(uid, wav, start, stop):
        return crops(wav, start, stop, uid)[0]

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label(spk_id):
        if spk_id not in label_encoder.lab2ind:
            raise KeyError(f"{csv_path}: speaker {spk_id!r} is not among the training speakers")
        return torch.LongTensor([label_encoder.lab2ind[spk_id]])

    data.add_dynamic_item(crop)
    data.add_dynamic_item(label)
    data.set_output_keys(["id", "sig", "spk_id_encoded"])
    return data


def utterance_dataset(csv_path, data_folder, sample_rate):
    """DynamicItemDataset yielding ``id`` and the full segment ``sig``."""
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements={"data_root": data_folder}
    )

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def read(wav, start, stop):
        stop = int(stop) if int(stop) > 0 else None
        return load_audio(wav, sample_rate, start=int(start), stop=stop)

    data.add_dynamic_item(read)
    data.set_output_keys(["id", "sig"])
    return data


def dataio_prep(hparams):
    """Training and validation datasets (+ a weighted sampler with extra sources).

    Returns ``{"train", "valid", "sampler"}``: the training set is wrapped so
    unreadable utterances are skipped and listed in
    ``<output_folder>/skipped_audio.txt``; with ``extra_sources`` it
    concatenates every source and ``sampler`` draws by source weight.
    """
    from speechbrain_moco.sources import SkippingDataset, multi_source_dataset

    report = os.path.join(hparams["output_folder"], "skipped_audio.txt")
    attach_audio_cache(hparams, hparams["two_crops"])
    sampler = None
    if hparams["extra_sources"]:
        main = {"name": "main", "annotation": hparams["train_annotation"],
                "data_folder": hparams["data_folder"], "weight": hparams["main_weight"]}
        train, sampler = multi_source_dataset([main] + list(hparams["extra_sources"]),
                                              hparams["two_crops"], hparams["seed"])
    else:
        train = two_view_dataset(hparams["train_annotation"], hparams["data_folder"], hparams["two_crops"])
    valid = hparams["valid_annotation"]
    if valid is not None:
        valid = two_view_dataset(valid, hparams["data_folder"], hparams["two_crops"])
    return {"train": SkippingDataset(train, report), "valid": valid, "sampler": sampler}


def attach_audio_cache(hparams, crops):
    """With ``audio_cache: FOLDER`` in the yaml, crops come from a memory-mapped copy.

    The cache of the training and validation manifests is built once by the
    main process (``speechbrain_moco.audio_cache``).
    """
    folder = hparams.get("audio_cache")
    if not folder:
        return None
    from speechbrain.utils.distributed import run_on_main

    from speechbrain_moco.audio_cache import AudioCache

    csvs = [hparams["train_annotation"], hparams.get("valid_annotation")]
    run_on_main(AudioCache.build, args=[csvs, hparams["data_folder"], folder, hparams["sample_rate"]])
    crops.audio_cache = AudioCache.build(csvs, hparams["data_folder"], folder, hparams["sample_rate"])
    return crops.audio_cache


def manifest_durations(dataset):
    """Durations (s) of every row of a (wrapped / concatenated) manifest dataset."""
    inner = getattr(dataset, "dataset", dataset)
    parts = inner.datasets if isinstance(inner, torch.utils.data.ConcatDataset) else [inner]
    return [float(row["duration"]) for part in parts for row in part.data.values()]


def stack_views(batch):
    """(2B, T) waveforms of both views and their relative lengths."""
    v1, v2 = batch.view1, batch.view2
    return torch.cat([v1.data, v2.data]), torch.cat([v1.lengths, v2.lengths])
