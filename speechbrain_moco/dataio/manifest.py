"""Manifest and preparation-option I/O: the one CSV reader and writer of the toolkit.

Manifest CSV contract
---------------------
Header ``ID,duration,wav,start,stop,spk_id`` (SpeechBrain's speaker-recognition layout).

* ``ID``: unique utterance id, see :func:`utterance_id` (``spk01/u1`` for
  ``<root>/spk01/u1.wav``; a segment of an utterance may append a suffix).
* ``wav``: audio path written with a ``$data_root`` placeholder for the corpus root,
  e.g. ``$data_root/spk01/u1.wav``. SpeechBrain resolves it with
  ``DynamicItemDataset.from_csv(path, replacements={"data_root": ROOT})``.
* ``start``, ``stop``: segment bounds **in samples** at the file's sample rate,
  ``stop`` exclusive. A whole utterance is ``start=0``, ``stop=num_frames``.
* ``duration``: ``(stop - start) / sample_rate`` **in seconds**, i.e. the duration of the
  segment (not of the file), so samplers and length sorting see what is loaded.
* ``spk_id``: speaker label, kept even for self-supervised training (PLDA, cohorts).

Preparation scripts skip their work only when every output exists **and** the options
saved in ``<save_folder>/prepare_options.json`` (written last) equal the current ones.

Trial lists are read and written by :mod:`speechbrain_moco.dataio.trials`.
"""

import csv
import json
import os
from pathlib import PurePosixPath

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

MANIFEST_FIELDS = ("ID", "duration", "wav", "start", "stop", "spk_id")
OPTIONS_FILE = "prepare_options.json"
DATA_ROOT = "$data_root"


def utterance_id(relpath):
    """Return the utterance ID of a file path relative to the corpus root.

    The ID is the POSIX path without its extension ('/' kept, a leading './' and
    Windows separators removed). Applying it to an ID is a no-op for IDs without a dot
    in their last component, so trial names with or without an extension map alike.

    Arguments
    ---------
    relpath : str
        Path relative to the corpus root, e.g. ``"spk01/u1.wav"``.

    Returns
    -------
    str
        The utterance ID.

    Example
    -------
    >>> utterance_id("spk01/u1.wav")
    'spk01/u1'
    >>> utterance_id("./spk01/sess/u1.flac")
    'spk01/sess/u1'
    >>> utterance_id("spk01/u1")
    'spk01/u1'
    """
    path = PurePosixPath(str(relpath).replace("\\", "/"))
    return str(path.with_suffix("")) if path.suffix else str(path)


def manifest_row(relpath, spk_id, start, stop, sample_rate, uid=None):
    """Build one manifest row (``$data_root`` placeholder, samples, seconds).

    Example
    -------
    >>> row = manifest_row("spk01/u1.wav", "spk01", 0, 24000, 16000)
    >>> row["ID"], row["duration"], row["wav"], row["stop"]
    ('spk01/u1', 1.5, '$data_root/spk01/u1.wav', 24000)
    """
    if not 0 <= start < stop:
        raise ValueError(f"{relpath}: need 0 <= start < stop, got {start}, {stop}")
    return {
        "ID": uid if uid is not None else utterance_id(relpath),
        "duration": (stop - start) / sample_rate,
        "wav": f"{DATA_ROOT}/{PurePosixPath(str(relpath).replace(chr(92), '/'))}",
        "start": int(start),
        "stop": int(stop),
        "spk_id": spk_id,
    }


def write_csv(rows, fields, path):
    """Write ``rows`` (dicts with exactly ``fields``) as CSV, atomically (temp file + rename).

    The writer of every CSV the toolkit produces (manifests, relabelled manifests).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def iter_csv(path, required=MANIFEST_FIELDS):
    """Yield ``(line number, row)`` for every data line of a CSV file (see :func:`read_csv`)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or ())
        missing = [k for k in required if k not in fields]
        if missing:
            raise ValueError(f"{path}:1: missing column(s) {sorted(missing)}")
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise ValueError(
                    f"{path}:{reader.line_num}: wrong number of fields (the header has {len(fields)})"
                )
            yield reader.line_num, row


def read_csv(path, required=MANIFEST_FIELDS):
    """Rows of a CSV file as ``{column: text}`` dicts, and its header.

    The reader of every CSV the toolkit consumes (manifests, corruption manifests,
    pseudo-label inputs): a missing column, or a row with the wrong number of fields,
    is an error naming the file and line.

    Arguments
    ---------
    path : str or os.PathLike
        CSV file with a header line.
    required : sequence of str
        Columns that must exist.

    Returns
    -------
    rows : list of dict
        One ``{column: text}`` per data line, as written.
    fields : list of str
        The header.

    Example
    -------
    >>> path = getfixture("tmp_path") / "n.csv"
    >>> _ = path.write_text("ID,wav\\nn1,a.wav\\n")
    >>> read_csv(path, required=("wav",))
    ([{'ID': 'n1', 'wav': 'a.wav'}], ['ID', 'wav'])
    >>> _ = path.write_text("ID,wav\\nn1,a.wav\\nn2\\n")
    >>> read_csv(path, required=("wav",))
    Traceback (most recent call last):
    ...
    ValueError: ...n.csv:3: wrong number of fields (the header has 2)
    """
    with open(path, newline="", encoding="utf-8") as f:
        fields = list(csv.DictReader(f).fieldnames or ())
    return [row for _, row in iter_csv(path, required)], fields


def write_manifest(rows, path):
    """Write manifest rows to a CSV file with the header ``ID,duration,wav,start,stop,spk_id``.

    Arguments
    ---------
    rows : list of dict
        Each with the keys of ``MANIFEST_FIELDS`` (extra keys are an error).
    path : str or os.PathLike
        Output CSV; its folder is created. Written atomically (temp file + rename).

    Raises
    ------
    ValueError
        On a duplicate ``ID`` (named in the message) or a row with missing/extra keys.

    Example
    -------
    >>> path = getfixture("tmp_path") / "m.csv"
    >>> write_manifest([manifest_row("s1/a.wav", "s1", 0, 16000, 16000)], path)
    >>> read_manifest(path)[0]["duration"]
    1.0
    """
    seen = set()
    for row in rows:
        if set(row) != set(MANIFEST_FIELDS):
            raise ValueError(f"{path}: row {row.get('ID')!r} has keys {sorted(row)}")
        if row["ID"] in seen:
            raise ValueError(f"{path}: duplicate ID {row['ID']!r}")
        seen.add(row["ID"])
    write_csv(rows, MANIFEST_FIELDS, path)
    logger.info("Wrote %d rows to %s", len(rows), path)


def read_manifest(path, data_root=None):
    """Read a manifest CSV written by :func:`write_manifest`.

    Arguments
    ---------
    path : str or os.PathLike
        Manifest CSV.
    data_root : str, optional
        If given, ``$data_root`` in ``wav`` is replaced by it.

    Returns
    -------
    list of dict
        Rows with ``duration`` as float, ``start``/``stop`` as int, the rest as str.

    Raises
    ------
    ValueError
        Naming the file and line for a missing column or a malformed row.
    """
    rows = []
    for line, row in iter_csv(path, MANIFEST_FIELDS):
        try:
            parsed = {
                "ID": row["ID"],
                "duration": float(row["duration"]),
                "wav": row["wav"],
                "start": int(row["start"]),
                "stop": int(row["stop"]),
                "spk_id": row["spk_id"],
            }
        except ValueError as err:
            raise ValueError(f"{path}:{line}: malformed row ({err})") from None
        if not parsed["ID"] or parsed["stop"] <= parsed["start"]:
            raise ValueError(f"{path}:{line}: empty ID or stop <= start")
        if data_root is not None:
            parsed["wav"] = parsed["wav"].replace(DATA_ROOT, str(data_root))
        rows.append(parsed)
    return rows


def options_match(save_folder, options, outputs):
    """Return True when preparation can be skipped.

    That is when every path in ``outputs`` exists and ``<save_folder>/prepare_options.json``
    exists and equals ``options`` (compared after a JSON round trip).

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> out = folder / "train.csv"
    >>> _ = out.write_text("x")
    >>> options_match(folder, {"a": 1}, [out])
    False
    >>> save_options(folder, {"a": 1})
    >>> options_match(folder, {"a": 1}, [out]), options_match(folder, {"a": 2}, [out])
    (True, False)
    """
    if not all(os.path.isfile(p) for p in outputs):
        return False
    opt_path = os.path.join(save_folder, OPTIONS_FILE)
    try:
        with open(opt_path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return saved == json.loads(json.dumps(options, default=str))


def save_options(save_folder, options):
    """Write ``options`` as readable JSON to ``<save_folder>/prepare_options.json``.

    Call it last, after every output is written, so an interrupted run is redone.
    """
    os.makedirs(save_folder, exist_ok=True)
    path = os.path.join(save_folder, OPTIONS_FILE)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(json.loads(json.dumps(options, default=str)), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
