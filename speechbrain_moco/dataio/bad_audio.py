"""One policy for bad audio, wherever audio is read.

A file (or manifest segment) is unusable when it cannot be read (missing, not audio,
truncated mid-frame), is at another sample rate, holds NaN or infinite samples, is empty,
or is silent (peak amplitude at most ``SILENCE_PEAK``). Every stage that reads audio
(training and validation through :class:`~speechbrain_moco.dataio.sources.SkippingDataset`;
trial scoring, training embeddings for PLDA / cohorts / calibration / export, pseudo-label
extraction through :func:`usable_rows`) skips such a file, counts it and names it in
``skipped_audio.txt`` (``id<TAB>reason`` lines) beside its outputs; a stage whose every
input is bad stops with an error that says so.
"""

import os

from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import AudioError, load_audio

logger = get_logger(__name__)

SILENCE_PEAK = 1e-4  # -80 dBFS: a few 16-bit steps (dithered digital silence)
REPORT_NAME = "skipped_audio.txt"


def load_usable(path, sample_rate, start=0, stop=None):
    """``(waveform, None)`` when ``path[start:stop]`` is usable audio, else ``(None, reason)``
    (the whole segment is read once: callers that need the audio get it from here)."""
    stop = int(stop) if stop is not None and int(stop) > 0 else None
    try:
        wav = load_audio(path, sample_rate, start=int(start), stop=stop)
    except AudioError as err:
        return None, str(err).replace(f"{path}: ", "").replace(f" {path}", "")
    if wav.numel() == 0:
        return None, "empty (0 samples)"
    peak = float(wav.abs().max())
    if peak <= SILENCE_PEAK:
        return None, f"silent (peak amplitude {peak:.2g})"
    return wav, None


def audio_problem(path, sample_rate, start=0, stop=None):
    """Why ``path[start:stop]`` cannot be used, or None when it can (the whole segment is read).

    Example
    -------
    >>> import tempfile
    >>> import numpy as np, soundfile as sf
    >>> folder = tempfile.mkdtemp()
    >>> sf.write(os.path.join(folder, "ok.wav"), 0.1 * np.sin(np.arange(1600.0)), 16000)
    >>> sf.write(os.path.join(folder, "zero.wav"), np.zeros(1600), 16000)
    >>> sf.write(os.path.join(folder, "nan.wav"), np.full(1600, np.nan, np.float32), 16000, "FLOAT")
    >>> [audio_problem(os.path.join(folder, f), 16000) for f in ("ok.wav", "zero.wav")]
    [None, 'silent (peak amplitude 0)']
    >>> audio_problem(os.path.join(folder, "nan.wav"), 16000)
    'NaN or infinite samples (a corrupt float file)'
    """
    return load_usable(path, sample_rate, start, stop)[1]


def append_report(report_path, skipped):
    """Append ``{id: reason}`` to a ``skipped_audio.txt`` (one line each, ids already listed
    are not repeated) and log them; returns the number of ids in the report."""
    listed = {}
    if os.path.isfile(report_path):
        with open(report_path, encoding="utf-8") as f:
            listed = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    new = {k: v for k, v in skipped.items() if k not in listed}
    if new:
        os.makedirs(os.path.dirname(os.path.abspath(report_path)), exist_ok=True)
        with open(report_path, "a", encoding="utf-8") as f:
            f.writelines(f"{uid}\t{reason}\n" for uid, reason in new.items())
        for uid, reason in new.items():
            logger.warning("skipping unusable audio %s: %s", uid, reason)
    return len(listed) + len(new)


def usable_rows(rows, data_folder, sample_rate, report_path, what="utterances"):
    """The manifest rows whose audio is usable; the others are named in ``report_path``.

    Arguments
    ---------
    rows : list of dict
        Manifest rows (``ID``, ``wav`` with ``$data_root``, ``start``, ``stop``).
    data_folder : str
        The ``$data_root``.
    sample_rate : int
        Expected rate.
    report_path : str
        The stage's ``skipped_audio.txt``.
    what : str
        What the rows are, for the error when none is usable.

    Returns
    -------
    kept : list of dict
        The usable rows, in order.
    skipped : dict
        ``ID -> reason`` of the others.

    Raises
    ------
    ValueError
        When no row is usable (naming the report).
    """
    kept, skipped = [], {}
    for row in rows:
        path = row["wav"].replace("$data_root", str(data_folder))
        problem = audio_problem(path, sample_rate, row.get("start", 0) or 0, row.get("stop", 0) or 0)
        if problem is None:
            kept.append(row)
        else:
            skipped[row["ID"]] = problem
    if skipped:
        append_report(report_path, skipped)
    if rows and not kept:
        raise ValueError(f"every one of the {len(rows)} {what} is unusable audio: see {report_path}")
    return kept, skipped
