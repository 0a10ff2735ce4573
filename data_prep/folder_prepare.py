"""Prepare manifests for any ``<root>/<speaker>/**/*.wav|flac`` speaker corpus.

Writes ``train.csv``, ``valid.csv``, optionally ``test.csv`` and ``skipped.txt`` to the
save folder, following the manifest contract of :mod:`speechbrain_moco.manifest`
(``$data_root`` placeholder, ``start``/``stop`` in samples, ``duration`` in seconds).

Example
-------
>>> from data_prep.synthetic_corpus import generate_corpus
>>> root = getfixture("tmp_path") / "corpus"
>>> _ = generate_corpus(root, n_speakers=4, n_held_out=2, utts_per_speaker=2,
...                     min_dur=0.3, max_dur=0.5, n_target_per_spk=1)
>>> out = prepare_folder(root, root / "manifests", verification_file="trials.txt")
>>> sorted(out)
['data_root', 'skipped', 'test', 'train', 'trials', 'valid']
"""

import hashlib
import os
import random

import soundfile
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from data_prep import require_data_folder
from speechbrain_moco.dataio.audio import find_audio_files
from speechbrain_moco.dataio.manifest import (
    manifest_row,
    options_match,
    save_options,
    utterance_id,
    write_manifest,
)
from speechbrain_moco.dataio.trials import read_trial_ids

logger = get_logger(__name__)


def prepare_folder(
    data_folder,
    save_folder,
    verification_file=None,
    valid_ratio=0.05,
    sample_rate=16000,
    seed=1234,
    extensions=(".wav", ".flac"),
    skip_prep=False,
):
    """Scan a speaker-per-folder corpus and write train/valid/test manifests.

    Arguments
    ---------
    data_folder : str or os.PathLike
        Corpus root; the first folder level below it is the speaker ID.
    save_folder : str or os.PathLike
        Where manifests, ``skipped.txt`` and ``prepare_options.json`` go.
    verification_file : str, optional
        Trial list (VoxCeleb or Kaldi format), absolute or relative to ``data_folder``.
        Its utterances form ``test.csv`` and its speakers are excluded from training.
        When None, no ``test.csv`` is written and nothing is excluded.
    valid_ratio : float
        Fraction of training-speaker utterances held out (deterministically, by ``seed``)
        for ``valid.csv``; at least one when ``valid_ratio > 0`` and utterances exist.
    sample_rate : int
        Expected sample rate; files at another rate are skipped (no silent resampling).
    seed : int
        Seed of the validation split.
    extensions : tuple of str
        Audio file extensions to collect (case-insensitive).
    skip_prep : bool
        If True, do nothing and only return the output paths.

    Returns
    -------
    dict
        Output paths: ``train``, ``valid``, ``skipped`` and (with trials) ``test``;
        ``trials``, the trial list to score (None without one), and ``data_root``, the
        ``$data_root`` of the manifests (the corpus root).

    Raises
    ------
    FileNotFoundError
        When ``data_folder`` is None or not a folder.
    ValueError
        When a trial names a file that does not exist or was skipped (file and line named).
    """
    require_data_folder(data_folder)
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"data_folder does not exist: {data_folder}")
    data_folder = os.path.abspath(data_folder)
    outputs = {
        "train": os.path.join(save_folder, "train.csv"),
        "valid": os.path.join(save_folder, "valid.csv"),
        "skipped": os.path.join(save_folder, "skipped.txt"),
    }
    trial_path = None
    if verification_file is not None:
        trial_path = os.path.join(data_folder, verification_file)  # keeps absolute paths
        outputs["test"] = os.path.join(save_folder, "test.csv")
    result = dict(outputs, trials=trial_path, data_root=data_folder)
    if skip_prep:
        return result
    options = {
        "data_folder": data_folder,
        "save_folder": os.path.abspath(save_folder),
        "verification_file": trial_path,
        "valid_ratio": valid_ratio,
        "sample_rate": sample_rate,
        "seed": seed,
        "extensions": sorted(e.lower() for e in extensions),
        # files added, removed or rewritten since the last preparation redo it
        "corpus": corpus_signature(data_folder, extensions, trial_path),
    }
    if options_match(save_folder, options, outputs.values()):
        logger.info("Manifests in %s are up to date, skipping preparation", save_folder)
        return result

    rows, skipped = scan_folder(data_folder, sample_rate, extensions)
    if not rows:
        raise ValueError(
            f"{data_folder}: no usable audio file: a folder corpus is <root>/<speaker>/**/"
            f"{'|'.join('*' + e for e in extensions)} at {sample_rate} Hz"
            + (
                f" ({len(skipped)} file(s) rejected, first: {skipped[0][0]}: {skipped[0][1]})"
                if skipped
                else ""
            )
        )
    by_id = {row["ID"]: row for row in rows}
    skipped_by_id = {utterance_id(rel): reason for rel, reason in skipped}

    test_ids, test_spks = [], set()
    if trial_path is not None:
        test_ids = sorted(
            {uid for _, *pair in read_trial_ids(trial_path, by_id, skipped=skipped_by_id) for uid in pair}
        )
        test_spks = {by_id[uid]["spk_id"] for uid in test_ids}
    train_rows = [row for row in rows if row["spk_id"] not in test_spks]
    if not train_rows:
        raise ValueError(
            f"{trial_path}: every speaker of {data_folder} is a trial speaker: none is left to train on"
        )
    train_rows, valid_rows = split_valid(train_rows, valid_ratio, seed)

    os.makedirs(save_folder, exist_ok=True)
    write_manifest(train_rows, outputs["train"])
    write_manifest(valid_rows, outputs["valid"])
    if trial_path is not None:
        write_manifest([by_id[uid] for uid in test_ids], outputs["test"])
    with open(outputs["skipped"], "w", encoding="utf-8") as f:
        f.writelines(f"{rel}\t{reason}\n" for rel, reason in skipped)
    if skipped:
        logger.warning("Skipped %d unusable file(s), listed in %s", len(skipped), outputs["skipped"])
    logger.info(
        "%d train / %d valid / %d test utterances, %d excluded trial speakers",
        len(train_rows),
        len(valid_rows),
        len(test_ids),
        len(test_spks),
    )
    save_options(save_folder, options)
    return result


def corpus_signature(data_folder, extensions, trial_path=None):
    """SHA-256 of the corpus' audio files (paths, sizes, modification times) and trial list.

    Part of the preparation's options: a corpus that changed since the manifests were
    written (files added, removed or rewritten) is prepared again.
    """
    digest = hashlib.sha256()
    paths = [os.path.join(data_folder, rel) for rel in find_audio_files(data_folder, extensions)]
    for path in paths + ([trial_path] if trial_path else []):
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return f"{len(paths)} files, sha256 {digest.hexdigest()}"


def scan_folder(data_folder, sample_rate=16000, extensions=(".wav", ".flac")):
    """Collect one manifest row per readable audio file below ``data_folder``.

    Returns
    -------
    rows : list of dict
        Manifest rows sorted by ID; ``spk_id`` is the first folder below the root.
    skipped : list of tuple(str, str)
        ``(relative path, reason)`` for files that cannot be used.
    """
    relpaths = find_audio_files(data_folder, extensions)
    rows, skipped = [], []
    for rel in tqdm(relpaths, desc="soundfile.info", disable=len(relpaths) < 2000):
        if "/" not in rel:
            skipped.append((rel, "not inside a speaker folder"))
            continue
        try:
            info = soundfile.info(os.path.join(data_folder, rel))
        except (RuntimeError, OSError, ValueError) as err:  # LibsndfileError et al.
            skipped.append((rel, f"unreadable: {type(err).__name__}: {err}".strip()))
            continue
        if info.frames <= 0:
            skipped.append((rel, "0 frames"))
        elif info.samplerate != sample_rate:
            skipped.append((rel, f"sample rate {info.samplerate} != {sample_rate}"))
        else:
            rows.append(manifest_row(rel, rel.split("/")[0], 0, info.frames, sample_rate))
    ids = [row["ID"] for row in rows]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{data_folder}: files with the same ID (extension only differs): {dup}")
    return sorted(rows, key=lambda r: r["ID"]), skipped


def split_valid(rows, valid_ratio, seed):
    """Deterministically move a ``valid_ratio`` fraction of ``rows`` to a validation list.

    At least one row goes to validation when ``valid_ratio > 0`` and there are rows; at
    least one stays for training when there are two or more.

    Example
    -------
    >>> rows = [{"ID": str(i)} for i in range(10)]
    >>> train, valid = split_valid(rows, 0.2, seed=1)
    >>> len(train), len(valid), split_valid(rows, 0.2, seed=1)[1] == valid
    (8, 2, True)
    """
    if valid_ratio <= 0 or not rows:
        return list(rows), []
    n_valid = max(1, round(valid_ratio * len(rows)))
    if len(rows) > 1:
        n_valid = min(n_valid, len(rows) - 1)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    valid_idx = set(order[:n_valid])
    train = [r for i, r in enumerate(rows) if i not in valid_idx]
    valid = [r for i, r in enumerate(rows) if i in valid_idx]
    return train, valid
