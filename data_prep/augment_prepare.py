"""Noise and room-impulse-response manifests for ``AddNoiseBank`` / ``AddReverbFFT``.

``prepare_noise`` reads MUSAN (``<folder>/{noise,music,speech}/**``; the ``types`` option
picks the subfolders) or any folder of audio files; ``prepare_rir`` reads RIRS_NOISES
(``<folder>/simulated_rirs/**`` and the RIRs of ``<folder>/real_rirs_isotropic_noises/``,
taken from its ``rir_list`` when present, else every file whose name lacks ``noise``) or
any folder of audio files. Both write ``save_path`` with the columns
``ID,duration,wav,start,stop,channels`` (absolute ``wav`` paths, ``start``/``stop`` in
samples of the file, ``duration`` in seconds of the segment), read by
``AddNoiseBank(csv_file=save_path)`` / ``AddReverbFFT(csv_file=save_path)``.

Beside ``save_path`` (``.../noise.csv``), the folder ``.../noise_prep/`` holds
``skipped.txt`` (``path<TAB>reason``) and ``prepare_options.json``: preparation is
skipped when the manifest exists and the options match. Unreadable, empty and (with
``check_silence``, on by default here: these corpora are small) all-silent files or
chunks are skipped and listed; files at another rate than ``sample_rate`` are skipped
unless ``allow_resample=True`` (then kept: ``AddNoiseBank``/``AddReverbFFT`` resample on
load). Multi-channel files are kept (the loaders average the channels).

Example
-------
>>> import numpy as np, soundfile
>>> folder = getfixture("tmp_path") / "noises"
>>> folder.mkdir()
>>> soundfile.write(folder / "hum.wav", np.ones(2500) * 0.1, 1000)
>>> path = prepare_noise(folder, folder.parent / "noise.csv", chunk_seconds=1.0,
...                      sample_rate=1000)
>>> rows = [line.split(",")[:2] + line.split(",")[3:5] for line in open(path).read().split()[1:]]
>>> rows[0], rows[-1]
(['hum_0_1000', '1.0', '0', '1000'], ['hum_2000_2500', '0.5', '2000', '2500'])
"""

import csv
import os

from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from data_prep.speaker_prep import AUDIO_ERRORS, SILENCE_PEAK, chunk_bounds, peak_amplitude
from speechbrain_moco.dataio.audio import AUDIO_EXTENSIONS, find_audio_files
from speechbrain_moco.dataio.manifest import options_match, save_options, utterance_id

logger = get_logger(__name__)

FIELDS = ("ID", "duration", "wav", "start", "stop", "channels")
MUSAN_TYPES = ("noise", "music", "speech")
RIR_TYPES = ("simulated", "real")


def prepare_noise(
    folder,
    save_path,
    types=("noise", "music"),
    chunk_seconds=None,
    sample_rate=16000,
    allow_resample=False,
    check_silence=True,
    skip_prep=False,
):
    """Write a noise manifest from MUSAN or any folder of audio files.

    Arguments
    ---------
    folder : str
        MUSAN root (with ``noise/``, ``music/``, ``speech/``) or any audio folder.
    save_path : str
        Output CSV.
    types : tuple of str
        MUSAN subfolders to use (ignored for a plain folder).
    chunk_seconds : float, optional
        Split files into consecutive chunks of this length (the remainder is kept as a
        shorter last chunk); IDs get ``_<start>_<stop>``.
    sample_rate : int
        Rate of the speech the noise is mixed with.
    allow_resample : bool
        Keep files at another rate (resampled when loaded) instead of skipping them.
    check_silence : bool
        Decode the files and skip all-silent files or chunks.
    skip_prep : bool
        Only return ``save_path``.

    Returns
    -------
    str
        ``save_path``.
    """
    folder = _existing(folder)
    if any(os.path.isdir(os.path.join(folder, t)) for t in MUSAN_TYPES):
        bad = [t for t in types if t not in MUSAN_TYPES]
        if bad:
            raise ValueError(f"unknown MUSAN type(s) {bad}; choose among {MUSAN_TYPES}")
        files = []
        for kind in types:
            sub = os.path.join(folder, kind)
            if not os.path.isdir(sub):
                raise FileNotFoundError(f"MUSAN folder {sub} not found (types={tuple(types)})")
            files += [f"{kind}/{rel}" for rel in find_audio_files(sub, AUDIO_EXTENSIONS)]
        layout = ("musan", sorted(types))
    else:
        files, layout = find_audio_files(folder, AUDIO_EXTENSIONS), ("folder", None)
    return _prepare_bank(
        folder, files, save_path, layout, chunk_seconds, sample_rate, allow_resample, check_silence, skip_prep
    )


def prepare_rir(
    folder,
    save_path,
    types=RIR_TYPES,
    sample_rate=16000,
    allow_resample=False,
    check_silence=True,
    skip_prep=False,
):
    """Write an impulse-response manifest from RIRS_NOISES or any folder of audio files.

    Arguments
    ---------
    folder : str
        RIRS_NOISES root (``simulated_rirs/``, ``real_rirs_isotropic_noises/``) or any
        folder of impulse responses.
    save_path : str
        Output CSV.
    types : tuple of str
        ``"simulated"`` and/or ``"real"`` (ignored for a plain folder).
    sample_rate, allow_resample, check_silence, skip_prep
        As for :func:`prepare_noise`.

    Returns
    -------
    str
        ``save_path``.
    """
    folder = _existing(folder)
    sim, real = "simulated_rirs", "real_rirs_isotropic_noises"
    if os.path.isdir(os.path.join(folder, sim)) or os.path.isdir(os.path.join(folder, real)):
        bad = [t for t in types if t not in RIR_TYPES]
        if bad:
            raise ValueError(f"unknown RIR type(s) {bad}; choose among {RIR_TYPES}")
        files = []
        if "simulated" in types:
            files += [
                f"{sim}/{rel}"
                for rel in find_audio_files(_existing(os.path.join(folder, sim)), AUDIO_EXTENSIONS)
            ]
        if "real" in types:
            files += _real_rirs(folder, real)
        layout = ("rirs_noises", sorted(types))
    else:
        files, layout = find_audio_files(folder, AUDIO_EXTENSIONS), ("folder", None)
    return _prepare_bank(
        folder, files, save_path, layout, None, sample_rate, allow_resample, check_silence, skip_prep
    )


def _existing(folder):
    """Absolute path of an existing folder, else ``FileNotFoundError``."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder not found: {folder}")
    return os.path.abspath(folder)


def _real_rirs(root, sub):
    """RIR files of ``real_rirs_isotropic_noises`` (its ``rir_list``, else by name)."""
    rir_list = os.path.join(root, sub, "rir_list")
    if not os.path.isfile(rir_list):
        folder = os.path.join(root, sub)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"RIR folder {folder} not found")
        logger.warning("%s not found: taking the files whose name lacks 'noise'", rir_list)
        return [
            f"{sub}/{n}"
            for n in sorted(os.listdir(folder))
            if n.lower().endswith(AUDIO_EXTENSIONS) and "noise" not in n.lower()
        ]
    files = []
    with open(rir_list, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                rel = fields[-1]
                if not os.path.isfile(os.path.join(root, rel)):
                    raise ValueError(f"{rir_list}:{lineno}: {rel!r} names a file that does not exist")
                files.append(rel)
    return sorted(set(files))


def _prepare_bank(
    folder, files, save_path, layout, chunk_seconds, sample_rate, allow_resample, check_silence, skip_prep
):
    """Probe ``files`` (relative to ``folder``), chunk them, write the manifest."""
    save_path = os.path.abspath(save_path)
    if skip_prep:
        return save_path
    side = os.path.splitext(save_path)[0] + "_prep"
    options = {
        "folder": folder,
        "layout": layout,
        "chunk_seconds": chunk_seconds,
        "sample_rate": sample_rate,
        "allow_resample": allow_resample,
        "check_silence": check_silence,
    }
    if options_match(side, options, [save_path]):
        logger.info("%s is up to date, skipping", save_path)
        return save_path
    if not files:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in {folder}")
    rows, skipped, resampled = [], [], 0
    for rel in tqdm(files, desc="probing", disable=len(files) < 2000):
        path = os.path.join(folder, rel)
        new, why = _bank_rows(path, chunk_seconds, sample_rate, allow_resample, check_silence)
        rows += new
        skipped += [(path, w) for w in why]
        resampled += bool(new) and new[0]["_rate"] != sample_rate
    ids = {}
    for row in rows:
        del row["_rate"]
        row["ID"] = utterance_id(os.path.relpath(row["wav"], folder)) + row.pop("_suffix")
        if row["ID"] in ids:
            raise ValueError(f"duplicate ID {row['ID']!r}: {ids[row['ID']]} and {row['wav']}")
        ids[row["ID"]] = row["wav"]
    if not rows:
        raise ValueError(f"no usable audio in {folder}; see {side}/skipped.txt")
    os.makedirs(side, exist_ok=True)
    with open(os.path.join(side, "skipped.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{p}\t{w}\n" for p, w in skipped)
    tmp = save_path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, save_path)
    if skipped:
        logger.warning("%d file(s)/chunk(s) skipped, listed in %s/skipped.txt", len(skipped), side)
    if resampled:
        logger.warning("%d file(s) are not at %d Hz; they will be resampled on load", resampled, sample_rate)
    logger.info("Wrote %d rows to %s", len(rows), save_path)
    save_options(side, options)
    return save_path


def _bank_rows(path, chunk_seconds, sample_rate, allow_resample, check_silence):
    """Rows of one file (with private ``_rate``/``_suffix`` keys) and skip reasons."""
    import soundfile

    try:
        info = soundfile.info(path)
    except AUDIO_ERRORS as err:
        return [], [f"unreadable: {type(err).__name__}: {err}".strip()]
    if info.frames <= 0:
        return [], ["0 frames (empty file)"]
    if info.samplerate != sample_rate and not allow_resample:
        why = (
            f"sample rate {info.samplerate} Hz, expected {sample_rate} Hz "
            "(not resampled; allow_resample=True keeps it)"
        )
        return [], [why]
    bounds = [(0, info.frames)]
    if chunk_seconds:
        bounds = chunk_bounds(info.frames, round(chunk_seconds * info.samplerate), True)
    rows, why = [], []
    for start, stop in bounds:
        suffix = f"_{start}_{stop}" if (start, stop) != (0, info.frames) else ""
        if check_silence:
            try:
                peak = peak_amplitude(path, start, stop)
            except AUDIO_ERRORS as err:
                return [], [f"unreadable: {type(err).__name__}: {err}".strip()]
            if peak <= SILENCE_PEAK:
                why.append(
                    f"all silent{' chunk ' + suffix[1:] if suffix else ''} (peak amplitude {peak:.2g})"
                )
                continue
        rows.append(
            {
                "ID": None,
                "duration": (stop - start) / info.samplerate,
                "wav": path,
                "start": start,
                "stop": stop,
                "channels": info.channels,
                "_rate": info.samplerate,
                "_suffix": suffix,
            }
        )
    return rows, why
