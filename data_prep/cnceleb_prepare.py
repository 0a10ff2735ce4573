"""Prepare CN-Celeb1 / CN-Celeb2 manifests.

Layouts (one root, or a list such as ``[CN-Celeb_flac, CN-Celeb2_flac]``):

* training audio of every root: ``<root>/data/idXXXXX/<genre>-<session>-<utt>.flac``
  (``.wav`` accepted too);
* evaluation (CN-Celeb1 only): ``<root>/eval/enroll/*.flac``, ``<root>/eval/test/*.flac``
  and ``<root>/eval/lists/{enroll.lst,test.lst,trials.lst}``, where ``enroll.lst`` maps an
  enrolment ID to a file (``id00800-enroll enroll/id00800-enroll.flac``) and
  ``trials.lst`` holds ``enrol_id test_path target(0/1)`` lines (paths relative to
  ``eval/``; the extension written there is ignored, ``.wav`` lists match ``.flac`` files).
  Another list in that format can be given as ``verification_file``; ``test.lst`` is not read.

Outputs in ``save_folder``: ``train.csv`` / ``dev.csv`` (IDs ``id00000/singing-01-001``),
and, when exactly one root has ``eval/lists/trials.lst``: ``enrol.csv`` / ``test.csv``
(IDs ``eval/enroll/id00800-enroll``, ``eval/test/id00800-singing-01-001``) and
``trials.txt``, the trial list in VoxCeleb format (``1 <enrol path> <test path>``, paths
relative to ``$data_root``) for ``verify.py --data_folder=<$data_root>``. The speakers of
the trials (``id00800``...) are excluded from training. ``$data_root`` is the root, or
the common parent of the roots. Plus ``skipped.txt`` and ``prepare_options.json``; bad
input is handled as described in :mod:`data_prep.speaker_prep`.
"""

import os

from speechbrain.utils.logger import get_logger

from data_prep.speaker_prep import (
    check_splits,
    probe_entries,
    roots_and_data_root,
    speaker_outputs,
    write_speaker_prep,
)
from speechbrain_moco.dataio.audio import find_audio_files
from speechbrain_moco.dataio.manifest import options_match, utterance_id

logger = get_logger(__name__)

EXTENSIONS = (".flac", ".wav")
LISTS = ("enroll.lst", "trials.lst")


def cnceleb_speaker(name):
    """Speaker of an evaluation file or enrolment ID.

    Example
    -------
    >>> cnceleb_speaker("test/id00800-singing-01-001.flac"), cnceleb_speaker("id00801-enroll")
    ('id00800', 'id00801')
    """
    return os.path.basename(name).split("-", 1)[0]


def prepare_cnceleb(
    data_folder,
    save_folder,
    verification_file=None,
    splits=("train", "dev"),
    dev_ratio=0.01,
    chunk_seconds=None,
    sample_rate=16000,
    seed=1234,
    check_silence=False,
    num_workers=4,
    skip_prep=False,
):
    """Write CN-Celeb train/dev manifests and the evaluation manifests and trial list.

    Arguments
    ---------
    data_folder : str or list of str
        CN-Celeb1 and/or CN-Celeb2 root(s).
    save_folder : str
        Output folder.
    verification_file : str, optional
        A trial list in the ``trials.lst`` format (``enrol_id test/<file> 0|1``), absolute
        or relative to the ``eval/`` folder; default ``eval/lists/trials.lst``.
    splits, dev_ratio, chunk_seconds, sample_rate, seed, check_silence, num_workers, skip_prep
        As for :func:`data_prep.voxceleb_prepare.prepare_voxceleb`.

    Returns
    -------
    dict
        Output paths (``train``, ``dev``, ``skipped``, and ``enrol``, ``test``, ``trials``
        when an evaluation set was found) and ``data_root``, the ``$data_root`` of the
        manifests.
    """
    roots, data_root = roots_and_data_root(data_folder)
    eval_roots = [r for r in roots if os.path.isfile(os.path.join(r, "eval", "lists", LISTS[1]))]
    if len(eval_roots) > 1:
        raise ValueError(f"several roots hold eval/lists/{LISTS[1]}: {eval_roots}")
    eval_root = eval_roots[0] if eval_roots else None
    trials_path = None
    if eval_root is not None:
        trials_path = os.path.join(eval_root, "eval", str(verification_file or "lists/trials.lst"))
        if not os.path.isfile(trials_path):
            raise FileNotFoundError(f"trial list not found: {trials_path}")
    elif verification_file is not None:
        raise FileNotFoundError(f"verification_file given but no root holds eval/lists/{LISTS[1]}")
    outputs = speaker_outputs(save_folder, splits, eval_root is not None)
    if skip_prep:
        return dict(outputs, data_root=data_root)
    options = {
        "corpus": "cnceleb",
        "data_folder": roots,
        "data_root": data_root,
        "eval_root": eval_root,
        "verification_file": trials_path,
        "splits": list(check_splits(splits)),
        "dev_ratio": dev_ratio,
        "chunk_seconds": chunk_seconds,
        "sample_rate": sample_rate,
        "seed": seed,
        "check_silence": check_silence,
    }
    if options_match(save_folder, options, outputs.values()):
        logger.info("CN-Celeb manifests in %s are up to date, skipping", save_folder)
        return dict(outputs, data_root=data_root)
    if eval_root is None:
        logger.warning("No root holds eval/lists/%s: writing training manifests only", LISTS[1])

    entries, skipped = [], []
    for root in roots:
        folder = os.path.join(root, "data")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{root}: no data/ folder (CN-Celeb layout)")
        prefix = os.path.relpath(folder, data_root).replace(os.sep, "/")
        for rel in find_audio_files(folder, EXTENSIONS):
            full = f"{prefix}/{rel}" if prefix != "." else rel
            if rel.count("/") != 1:
                skipped.append((full, "not at data/<speaker>/<utterance>"))
            else:
                entries.append((utterance_id(rel), full, rel.split("/")[0]))
    rows, bad = probe_entries(entries, data_root, sample_rate, check_silence, num_workers)
    skipped += bad
    trial_sets, eval_rows = {}, {}
    if eval_root is not None:
        eval_rows, trials, bad = _eval_set(
            eval_root, trials_path, data_root, sample_rate, check_silence, num_workers
        )
        skipped += bad
        trial_sets["trials"] = trials
    outputs = write_speaker_prep(
        outputs, options, rows, eval_rows, trial_sets, skipped, dev_ratio, chunk_seconds, sample_rate, seed
    )
    return dict(outputs, data_root=data_root)


def _eval_set(root, trials_path, data_root, sample_rate, check_silence, num_workers):
    """Probe ``eval/enroll`` and ``eval/test``, read the lists: ``(rows, trials, skipped)``."""
    eval_dir = os.path.join(root, "eval")
    prefix = os.path.relpath(eval_dir, data_root).replace(os.sep, "/")
    prefix = "" if prefix == "." else prefix + "/"
    entries = []
    for sub in ("enroll", "test"):
        folder = os.path.join(eval_dir, sub)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{root}: eval/{sub}/ is missing")
        for rel in find_audio_files(folder, EXTENSIONS):
            full = f"{prefix}{sub}/{rel}"
            entries.append((utterance_id(f"eval/{sub}/{rel}"), full, cnceleb_speaker(rel)))
    rows, skipped = probe_entries(entries, data_root, sample_rate, check_silence, num_workers)
    by_id = {row["ID"]: row for row in rows}
    skipped_ids = {utterance_id("eval/" + rel[len(prefix) :]): why for rel, why in skipped}

    def check(path, lineno, name):
        uid = utterance_id(f"eval/{name}")
        if uid in skipped_ids:
            raise ValueError(f"{path}:{lineno}: {name!r} was skipped ({skipped_ids[uid]})")
        if uid not in by_id:
            raise ValueError(f"{path}:{lineno}: {name!r} names a file that does not exist")
        return uid

    enroll_path = os.path.join(eval_dir, "lists", LISTS[0])
    enrol_of = {}
    for lineno, fields in _lines(enroll_path, 2, "'enrol_id enroll/<file>'"):
        enrol_of[fields[0]] = check(enroll_path, lineno, fields[1])
    trials = []
    for lineno, fields in _lines(trials_path, 3, "'enrol_id test/<file> 0|1'"):
        enrol, test, label = fields
        if label not in ("0", "1"):
            raise ValueError(
                f"{trials_path}:{lineno}: label {label!r} is not 0 or 1 (expected 'enrol_id test/<file> 0|1')"
            )
        if enrol not in enrol_of:
            raise ValueError(f"{trials_path}:{lineno}: enrolment {enrol!r} is not in {enroll_path}")
        trials.append((int(label), enrol_of[enrol], check(trials_path, lineno, test)))
    if not trials:
        raise ValueError(f"{trials_path}: the trial list is empty")
    return by_id, trials, skipped


def _lines(path, n_fields, form):
    """``(lineno, fields)`` of the non-blank lines of a list, each with ``n_fields`` fields."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != n_fields:
                raise ValueError(f"{path}:{lineno}: malformed line {line.strip()!r}, expected {form}")
            yield lineno, fields
