"""Training audio decoded once into one memory-mapped 16-bit PCM file.

Reading two random 2 s crops per utterance from compressed audio (FLAC, and
worse m4a) every step costs decoding time in the loader. ``AudioCache`` decodes
every segment of the manifests once (``build``, on the main process) into
``<folder>/audio.pcm16`` with an index ``<folder>/index.json``; ``TwoCrops``
then slices crops out of the memory map: no decode, no seek, pages shared by
every loader worker and every process of the machine. The file costs 2 bytes
per sample on disk (about 115 MB per hour of 16 kHz audio); the OS page cache
keeps what fits in memory.

Samples are stored as 16-bit PCM: lossless for 16-bit sources (VoxCeleb,
LibriSpeech, CN-Celeb, FLAC/WAV corpora), a 1/32768 quantisation otherwise.
An utterance that cannot be decoded is left out of the index (counted and
logged); the pipeline reads it from disk as before, so it is reported by
``SkippingDataset`` like any unreadable file.

Example
-------
>>> import numpy as np, soundfile as sf
>>> from speechbrain_moco.dataio.manifest import manifest_row, write_manifest
>>> tmp = getfixture("tmp_path")
>>> sf.write(tmp / "a.wav", (np.arange(1600) % 100 - 50).astype(np.int16), 16000)
>>> write_manifest([manifest_row("a.wav", "s", 0, 1600, 16000)], tmp / "m.csv")
>>> cache = AudioCache.build([tmp / "m.csv"], tmp, tmp / "cache")
>>> (cache.crop("a", 100, 3) * 32768).tolist()
[-50.0, -49.0, -48.0]
>>> len(cache), cache.length("a")
(1, 1600)
"""

import json
import os

import numpy as np
import torch
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import AudioError, load_audio
from speechbrain_moco.dataio.manifest import read_manifest

logger = get_logger(__name__)

DATA_FILE = "audio.pcm16"
INDEX_FILE = "index.json"


def _signature(csv_paths, data_folder, sample_rate):
    files = []
    for path in csv_paths:
        stat = os.stat(path)
        files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    return {"manifests": files, "data_folder": os.path.abspath(data_folder), "sample_rate": sample_rate}


class AudioCache:
    """Memory-mapped 16-bit PCM of every segment of some manifests (see module docstring)."""

    def __init__(self, folder):
        with open(os.path.join(folder, INDEX_FILE), encoding="utf-8") as f:
            index = json.load(f)
        self.folder = str(folder)
        self.sample_rate = index["sample_rate"]
        self.entries = {uid: tuple(v) for uid, v in index["entries"].items()}
        self._data = None

    @classmethod
    def build(cls, csv_paths, data_folder, folder, sample_rate=16000):
        """Decode the segments of ``csv_paths`` into ``folder`` (once) and open it.

        An up-to-date cache (same manifests, sizes, modification times, data
        folder and rate) is reused; the files are written atomically.
        """
        csv_paths = [str(p) for p in csv_paths if p is not None and os.path.isfile(p)]
        signature = _signature(csv_paths, data_folder, sample_rate)
        index_path = os.path.join(folder, INDEX_FILE)
        if os.path.isfile(index_path):
            with open(index_path, encoding="utf-8") as f:
                if json.load(f).get("signature") == signature:
                    return cls(folder)
        os.makedirs(folder, exist_ok=True)
        entries, offset, failed = {}, 0, []
        tmp_data = os.path.join(folder, DATA_FILE + ".tmp")
        with open(tmp_data, "wb") as out:
            for path in csv_paths:
                for row in read_manifest(path, data_root=str(data_folder)):
                    if row["ID"] in entries:
                        continue
                    stop = row["stop"] if row["stop"] > 0 else None
                    try:
                        wav = load_audio(row["wav"], sample_rate, start=row["start"], stop=stop)
                    except AudioError as err:
                        failed.append(f"{row['ID']}: {err}")
                        continue
                    pcm = np.clip(np.round(wav.numpy() * 32768.0), -32768, 32767).astype("<i2")
                    out.write(pcm.tobytes())
                    entries[row["ID"]] = (offset, int(pcm.size))
                    offset += int(pcm.size)
        os.replace(tmp_data, os.path.join(folder, DATA_FILE))
        with open(index_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(
                {"signature": signature, "sample_rate": sample_rate, "entries": entries, "failed": failed}, f
            )
        os.replace(index_path + ".tmp", index_path)
        if failed:
            logger.warning(
                "audio cache: %d segment(s) could not be decoded and are read from disk (first: %s)",
                len(failed),
                failed[0],
            )
        logger.info(
            "audio cache: %d segments, %.1f h, in %s", len(entries), offset / sample_rate / 3600, folder
        )
        return cls(folder)

    def __len__(self):
        return len(self.entries)

    def __contains__(self, uid):
        return uid in self.entries

    def __getstate__(self):  # loader workers (spawn) reopen the map instead of copying it
        state = dict(self.__dict__)
        state["_data"] = None
        return state

    @property
    def data(self):
        if self._data is None:
            path = os.path.join(self.folder, DATA_FILE)
            self._data = (
                np.memmap(path, dtype="<i2", mode="r") if os.path.getsize(path) else np.zeros(0, dtype="<i2")
            )
        return self._data

    def length(self, uid):
        """Samples of the segment ``uid``."""
        return self.entries[uid][1]

    def crop(self, uid, offset, length):
        """``length`` samples of segment ``uid`` from ``offset``, float32 in [-1, 1)."""
        start, n = self.entries[uid]
        if offset < 0 or offset + length > n:
            raise ValueError(f"{uid}: crop {offset}:{offset + length} outside its {n} samples")
        pcm = np.asarray(self.data[start + offset : start + offset + length], dtype=np.float32)
        return torch.from_numpy(pcm / 32768.0)


def attach_audio_cache(crops, csv_paths, data_folder, folder, sample_rate=16000):
    """Make ``crops`` (a ``TwoCrops``) slice its crops from a memory-mapped cache in ``folder``.

    The cache of ``csv_paths`` (``None`` entries ignored) is built once, by the main
    process; every process then opens it. ``folder`` None: no cache (crops are read from
    the audio files). Returns the cache, or None.
    """
    if folder is None:
        return None
    run_on_main(AudioCache.build, args=[csv_paths, data_folder, folder, sample_rate])
    crops.audio_cache = AudioCache.build(csv_paths, data_folder, folder, sample_rate)
    return crops.audio_cache
