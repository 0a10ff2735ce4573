"""Steps shared by the corpus preparations (VoxCeleb, CN-Celeb, LibriSpeech, augmentation).

A corpus module lists its files as ``(uid, relpath, spk_id)`` entries (``relpath`` relative
to the manifests' ``$data_root``), probes them with :func:`probe_entries`, resolves its
trial list with :func:`speechbrain_moco.dataio.trials.read_trial_ids` and hands everything
to :func:`write_speaker_prep`.

Bad input
---------
:func:`probe_file` rejects, with a reason that ends up in ``skipped.txt``
(``path<TAB>reason``): unreadable or corrupt files, files with 0 frames, files at another
sample rate (nothing is resampled), files with another number of channels, and, only
when ``check_silence=True``, all-silent files (peak amplitude <= ``SILENCE_PEAK``).
Silence detection decodes every file completely, which also catches truncated files
whose header is intact; it costs a full read of the corpus, hence off by default.
A trial list naming a missing or skipped file raises ``ValueError`` naming the list and
line; two files mapping to one ID raise ``ValueError`` naming both.
"""

import os
from functools import partial
from multiprocessing import Pool

import soundfile
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from data_prep import require_data_folder
from data_prep.folder_prepare import split_valid
from speechbrain_moco.dataio.manifest import manifest_row, save_options, write_manifest
from speechbrain_moco.dataio.trials import write_trials

logger = get_logger(__name__)

SILENCE_PEAK = 1e-4  # -80 dBFS: a few 16-bit steps (dithered digital silence)
AUDIO_ERRORS = (RuntimeError, OSError, ValueError, TypeError)  # what soundfile raises
SPLITS = ("train", "dev")
POOL_MIN_FILES = 1000  # probe in a process pool from this many files on


def roots_and_data_root(data_folder):
    """Absolute corpus roots and the ``$data_root`` they share.

    Example
    -------
    >>> d = getfixture("tmp_path")
    >>> (d / "vox1").mkdir(), (d / "vox2").mkdir()
    (None, None)
    >>> roots_and_data_root([d / "vox1", d / "vox2"]) == ([str(d / "vox1"), str(d / "vox2")], str(d))
    True
    >>> roots_and_data_root(d / "vox1")[1] == str(d / "vox1")
    True
    """
    require_data_folder(data_folder)
    if isinstance(data_folder, (str, os.PathLike)):
        data_folder = [data_folder]
    roots = [os.path.abspath(str(r)) for r in data_folder]
    if not roots:
        raise ValueError("data_folder: no corpus root given")
    for root in roots:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"corpus root not found: {root}")
    return roots, roots[0] if len(roots) == 1 else os.path.commonpath(roots)


def peak_amplitude(path, start=0, stop=None):
    """Largest absolute sample value of ``path[start:stop]``, read block by block."""
    peak = 0.0
    for block in soundfile.blocks(
        path, blocksize=1 << 16, start=start, stop=stop, dtype="float32", always_2d=True
    ):
        if block.size:
            peak = max(peak, float(abs(block).max()))
    return peak


def probe_file(path, sample_rate=16000, channels=1, check_silence=False):
    """Return ``(frames, None)`` for a usable file, else ``(None, reason)``.

    ``sample_rate`` or ``channels`` set to None accept any value.

    Example
    -------
    >>> import numpy as np
    >>> path = str(getfixture("tmp_path") / "a.wav")
    >>> soundfile.write(path, np.zeros(800), 8000)
    >>> probe_file(path, 16000)
    (None, 'sample rate 8000 Hz, expected 16000 Hz (not resampled)')
    >>> probe_file(path, 8000, check_silence=True)[1]
    'all silent (peak amplitude 0)'
    """
    try:
        info = soundfile.info(path)
    except AUDIO_ERRORS as err:  # LibsndfileError is a RuntimeError
        return None, f"unreadable: {type(err).__name__}: {err}".strip()
    if info.frames <= 0:
        return None, "0 frames (empty file)"
    if sample_rate is not None and info.samplerate != sample_rate:
        return None, f"sample rate {info.samplerate} Hz, expected {sample_rate} Hz (not resampled)"
    if channels is not None and info.channels != channels:
        return None, f"{info.channels} channels, expected {channels}"
    if check_silence:
        try:
            peak = peak_amplitude(path)
        except AUDIO_ERRORS as err:
            return None, f"unreadable: {type(err).__name__}: {err}".strip()
        if peak <= SILENCE_PEAK:
            return None, f"all silent (peak amplitude {peak:.2g})"
    return info.frames, None


def probe_entries(entries, data_root, sample_rate=16000, check_silence=False, num_workers=1, channels=1):
    """Probe ``(uid, relpath, spk_id)`` entries; return ``(rows, skipped)``.

    ``rows`` are whole-file manifest rows sorted by ID, ``skipped`` is a list of
    ``(relpath, reason)``. With ``num_workers > 1`` large corpora are probed in a pool.
    Two entries with one ID raise ``ValueError`` naming both files.
    """
    seen = {}
    for uid, rel, _ in entries:
        if uid in seen:
            raise ValueError(f"duplicate utterance ID {uid!r}: {seen[uid]} and {rel} (under {data_root})")
        seen[uid] = rel
    paths = [os.path.join(data_root, rel) for _, rel, _ in entries]
    probe = partial(probe_file, sample_rate=sample_rate, channels=channels, check_silence=check_silence)
    bar = {"total": len(paths), "desc": "probing audio", "disable": len(paths) < 2000}
    if num_workers > 1 and len(paths) >= POOL_MIN_FILES:
        with Pool(num_workers) as pool:
            results = list(tqdm(pool.imap(probe, paths, chunksize=256), **bar))
    else:
        results = [probe(p) for p in tqdm(paths, **bar)]
    rows, skipped = [], []
    for (uid, rel, spk), (frames, reason) in zip(entries, results):
        if reason is None:
            rows.append(manifest_row(rel, spk, 0, frames, sample_rate, uid=uid))
        else:
            skipped.append((rel, reason))
    return sorted(rows, key=lambda r: r["ID"]), skipped


def chunk_bounds(frames, chunk, keep_remainder=False):
    """Consecutive ``(start, stop)`` chunks of ``chunk`` samples covering ``frames``.

    A trailing part shorter than a chunk is dropped unless ``keep_remainder``; a file
    shorter than one chunk is always kept whole.

    Example
    -------
    >>> chunk_bounds(10, 4), chunk_bounds(10, 4, keep_remainder=True), chunk_bounds(3, 4)
    ([(0, 4), (4, 8)], [(0, 4), (4, 8), (8, 10)], [(0, 3)])
    """
    if frames <= chunk:
        return [(0, frames)]
    bounds = [(s, s + chunk) for s in range(0, frames - chunk + 1, chunk)]
    if keep_remainder and bounds[-1][1] < frames:
        bounds.append((bounds[-1][1], frames))
    return bounds


def chunk_rows(rows, chunk_seconds, sample_rate, keep_remainder=False):
    """Split whole-file rows into chunk rows with IDs ``<ID>_<start>_<stop>`` (samples).

    Example
    -------
    >>> row = manifest_row("s/a.wav", "s", 0, 20, 10)
    >>> [(r["ID"], r["start"], r["stop"], r["duration"]) for r in chunk_rows([row], 0.8, 10)]
    [('s/a_0_8', 0, 8, 0.8), ('s/a_8_16', 8, 16, 0.8)]
    """
    chunk = round(chunk_seconds * sample_rate)
    if chunk <= 0:
        raise ValueError(f"chunk_seconds={chunk_seconds} gives an empty chunk")
    out = []
    for row in rows:
        if row["stop"] - row["start"] <= chunk:
            out.append(row)
            continue
        bounds = chunk_bounds(row["stop"] - row["start"], chunk, keep_remainder)
        rate = (row["stop"] - row["start"]) / row["duration"]
        for start, stop in bounds:
            start, stop = start + row["start"], stop + row["start"]
            out.append(
                dict(
                    row,
                    ID=f"{row['ID']}_{start}_{stop}",
                    start=start,
                    stop=stop,
                    duration=(stop - start) / rate,
                )
            )
    return out


def write_skipped(path, skipped):
    """Write ``relpath<TAB>reason`` lines (an empty file when nothing was skipped)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{rel}\t{reason}\n" for rel, reason in skipped)
    if skipped:
        logger.warning("Skipped %d unusable file(s), listed in %s", len(skipped), path)


def check_splits(splits):
    """Validate ``splits`` (a subset of ``("train", "dev")``) and return it as a tuple."""
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {splits}")
    return splits


def speaker_outputs(save_folder, splits, with_trials, trial_names=("trials",)):
    """Output paths of a speaker-corpus preparation."""
    out = {s: os.path.join(save_folder, f"{s}.csv") for s in check_splits(splits)}
    out["skipped"] = os.path.join(save_folder, "skipped.txt")
    if with_trials:
        out["enrol"] = os.path.join(save_folder, "enrol.csv")
        out["test"] = os.path.join(save_folder, "test.csv")
        for name in trial_names:
            out[name] = os.path.join(save_folder, f"{name}.txt")
    return out


def write_speaker_prep(
    outputs, options, train_rows, eval_rows, trial_sets, skipped, dev_ratio, chunk_seconds, sample_rate, seed
):
    """Exclude trial speakers, split train/dev, chunk, and write every output.

    Arguments
    ---------
    outputs : dict
        From :func:`speaker_outputs`; ``options`` are saved last in its folder.
    train_rows : list of dict
        Whole-file rows that may be trained on.
    eval_rows : dict
        ``ID -> row`` of the files the trials may name.
    trial_sets : dict
        Output key (e.g. ``"trials"``) -> list of ``(label, enrol_id, test_id)``.
    skipped : list of tuple(str, str)
        ``(relpath, reason)`` of rejected files.
    """
    enrol_ids = sorted({t[1] for trials in trial_sets.values() for t in trials})
    test_ids = sorted({t[2] for trials in trial_sets.values() for t in trials})
    trial_spks = {eval_rows[u]["spk_id"] for u in enrol_ids + test_ids}
    rows = [r for r in train_rows if r["spk_id"] not in trial_spks]
    dev = []
    if "dev" in outputs:
        rows, dev = split_valid(rows, dev_ratio, seed)
    if chunk_seconds:
        rows = chunk_rows(rows, chunk_seconds, sample_rate)
        dev = chunk_rows(dev, chunk_seconds, sample_rate)
    save_folder = os.path.dirname(outputs["skipped"])
    os.makedirs(save_folder, exist_ok=True)
    if "train" in outputs:
        write_manifest(rows, outputs["train"])
    if "dev" in outputs:
        write_manifest(dev, outputs["dev"])
    if trial_sets:
        write_manifest([eval_rows[u] for u in enrol_ids], outputs["enrol"])
        write_manifest([eval_rows[u] for u in test_ids], outputs["test"])
        relpath_of = {u: eval_rows[u]["wav"].split("/", 1)[1] for u in enrol_ids + test_ids}
        for key, trials in trial_sets.items():
            write_trials(outputs[key], trials, relpath_of)
    write_skipped(outputs["skipped"], skipped)
    logger.info(
        "%d train / %d dev rows, %d enrol / %d test utterances, %d trial speakers excluded",
        len(rows) if "train" in outputs else 0,
        len(dev),
        len(enrol_ids),
        len(test_ids),
        len(trial_spks),
    )
    save_options(save_folder, options)
    return outputs
