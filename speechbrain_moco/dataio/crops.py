"""Random crops of an utterance: two per utterance for MoCo (optionally disjoint), one
for the supervised trainer.

Crops are drawn from a random generator seeded by ``(seed, epoch, utterance ID)``, so an
epoch's crops are the same whether the run was interrupted or not, and whatever the
number of loader workers.
"""

import math
import random
import zlib

from speechbrain_moco.dataio.audio import audio_frames, load_audio


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
            return [tiled[off : off + self.crop].clone() for off in self.offsets(uid, n)]
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
