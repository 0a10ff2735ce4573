"""Prepare LibriSpeech manifests and, when none is given, a seeded trial list.

Layout: ``<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``. IDs are
the paths relative to the root without extension
(``train-clean-100/19/198/19-198-0001``), ``spk_id`` is the speaker folder.

Outputs in ``save_folder``: ``train.csv`` / ``dev.csv``, ``enrol.csv`` / ``test.csv``,
``trials.txt`` (VoxCeleb format, names relative to the root, so
``verify.py --data_folder=<root> --verification_file=<save_folder>/trials.txt`` scores it),
``skipped.txt`` and ``prepare_options.json``. Without ``verification_file`` the trials are
generated from ``n_trial_speakers`` held-out speakers (drawn with ``seed`` from
``trial_subsets``, or from ``subsets`` when None), ``trials_per_speaker`` per speaker, half
target and half non-target. Trial speakers are never trained on. Bad input is handled as
described in :mod:`data_prep.speaker_prep`.
"""

import itertools
import os
import random

from speechbrain.utils.logger import get_logger

from data_prep import require_data_folder
from data_prep.speaker_prep import (
    check_splits,
    probe_entries,
    roots_and_data_root,
    speaker_outputs,
    write_speaker_prep,
)
from speechbrain_moco.dataio.audio import find_audio_files
from speechbrain_moco.dataio.manifest import options_match, utterance_id
from speechbrain_moco.dataio.trials import read_trial_ids

logger = get_logger(__name__)


def prepare_librispeech(
    data_folder,
    save_folder,
    subsets=("train-clean-100",),
    verification_file=None,
    n_trial_speakers=20,
    trials_per_speaker=50,
    trial_subsets=None,
    splits=("train", "dev"),
    dev_ratio=0.01,
    chunk_seconds=None,
    sample_rate=16000,
    seed=1234,
    check_silence=False,
    num_workers=4,
    skip_prep=False,
):
    """Write LibriSpeech train/dev/enrol/test manifests and ``trials.txt``.

    Arguments
    ---------
    data_folder : str
        LibriSpeech root (holding ``train-clean-100/`` ...).
    save_folder : str
        Output folder.
    subsets : tuple of str
        Subsets to train on.
    verification_file : str, optional
        Trial list (VoxCeleb or Kaldi format, names relative to the root), absolute or
        relative to the root. When None, a list is generated (see module docstring).
    n_trial_speakers : int
        Held-out speakers of a generated list (each needs >= 2 utterances).
    trials_per_speaker : int
        Trials per held-out speaker of a generated list (even: half are targets).
    trial_subsets : tuple of str, optional
        Subsets (e.g. ``("test-clean",)``) that supply the trial speakers and are never
        trained on; None takes the held-out speakers from ``subsets``.
    splits, dev_ratio, chunk_seconds, sample_rate, seed, check_silence, num_workers, skip_prep
        As for :func:`data_prep.voxceleb_prepare.prepare_voxceleb`; ``seed`` also seeds
        the generated trials.

    Returns
    -------
    dict
        Output paths (``train``, ``dev``, ``skipped``, ``enrol``, ``test``, ``trials``)
        and ``data_root``, the ``$data_root`` of the manifests.
    """
    require_data_folder(data_folder)
    if not isinstance(data_folder, (str, os.PathLike)):
        raise TypeError(f"data_folder must be one LibriSpeech root, got {data_folder!r}")
    (root,), data_root = roots_and_data_root(data_folder)
    subsets, trial_subsets = list(subsets), list(trial_subsets or ())
    if set(subsets) & set(trial_subsets):
        raise ValueError(f"subsets {subsets} and trial_subsets {trial_subsets} overlap")
    if trials_per_speaker < 2 or trials_per_speaker % 2:
        raise ValueError(f"trials_per_speaker must be even and >= 2, got {trials_per_speaker}")
    trial_path = None
    if verification_file is not None:
        trial_path = os.path.join(root, str(verification_file))
        if not os.path.isfile(trial_path):
            raise FileNotFoundError(f"trial list not found: {trial_path}")
    outputs = speaker_outputs(save_folder, splits, True)
    if skip_prep:
        return dict(outputs, data_root=data_root)
    options = {
        "corpus": "librispeech",
        "data_folder": root,
        "subsets": subsets,
        "verification_file": trial_path,
        "trial_subsets": trial_subsets,
        "n_trial_speakers": None if trial_path else n_trial_speakers,
        "trials_per_speaker": None if trial_path else trials_per_speaker,
        "splits": list(check_splits(splits)),
        "dev_ratio": dev_ratio,
        "chunk_seconds": chunk_seconds,
        "sample_rate": sample_rate,
        "seed": seed,
        "check_silence": check_silence,
    }
    if options_match(save_folder, options, outputs.values()):
        logger.info("LibriSpeech manifests in %s are up to date, skipping", save_folder)
        return dict(outputs, data_root=data_root)

    entries, skipped = [], []
    for subset in subsets + trial_subsets:
        folder = os.path.join(root, subset)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"LibriSpeech subset not found: {folder}")
        for rel in find_audio_files(folder, (".flac",)):
            if rel.count("/") != 2:
                skipped.append((f"{subset}/{rel}", "not at <subset>/<speaker>/<chapter>/"))
            else:
                entries.append((utterance_id(f"{subset}/{rel}"), f"{subset}/{rel}", rel.split("/")[0]))
    rows, bad = probe_entries(entries, root, sample_rate, check_silence, num_workers)
    skipped += bad
    by_id = {row["ID"]: row for row in rows}
    eval_only = tuple(f"{s}/" for s in trial_subsets)
    if trial_path is not None:
        trials = read_trial_ids(
            trial_path, by_id, utterance_id, {utterance_id(rel): why for rel, why in skipped}
        )
    else:
        pool = [r for r in rows if r["ID"].startswith(eval_only)] if trial_subsets else rows
        trials = sample_trials(pool, n_trial_speakers, trials_per_speaker, seed)
    train_rows = [r for r in rows if not r["ID"].startswith(eval_only)] if eval_only else rows
    outputs = write_speaker_prep(
        outputs,
        options,
        train_rows,
        by_id,
        {"trials": trials},
        skipped,
        dev_ratio,
        chunk_seconds,
        sample_rate,
        seed,
    )
    return dict(outputs, data_root=data_root)


def sample_trials(rows, n_speakers, trials_per_speaker, seed):
    """Balanced seeded trials on ``n_speakers`` speakers drawn from manifest ``rows``.

    For each drawn speaker: ``trials_per_speaker // 2`` target trials (distinct pairs of
    its utterances; fewer, with a warning, if it has too few pairs) and as many
    non-target trials (one of its utterances against one of another drawn speaker).

    Returns
    -------
    list of tuple(int, str, str)
        ``(label, enrol_id, test_id)``.

    Example
    -------
    >>> rows = [{"ID": f"s{s}/u{u}", "spk_id": f"s{s}"} for s in range(3) for u in range(3)]
    >>> trials = sample_trials(rows, 2, 4, seed=0)
    >>> len(trials), sum(t[0] for t in trials), trials == sample_trials(rows, 2, 4, seed=0)
    (8, 4, True)
    """
    utts = {}
    for row in rows:
        utts.setdefault(row["spk_id"], []).append(row["ID"])
    candidates = sorted(s for s, u in utts.items() if len(u) >= 2)
    if n_speakers < 2 or len(candidates) < n_speakers:
        raise ValueError(
            f"need n_trial_speakers >= 2 speakers with >= 2 utterances; asked "
            f"for {n_speakers}, {len(candidates)} available"
        )
    rng = random.Random(seed)
    speakers = sorted(rng.sample(candidates, n_speakers))
    half = trials_per_speaker // 2
    trials = []
    for spk in speakers:
        own = sorted(utts[spk])
        pairs = list(itertools.combinations(own, 2))
        n = min(half, len(pairs))
        if n < half:
            logger.warning("speaker %s: only %d target pairs (asked %d)", spk, n, half)
        trials += [(1, *rng.sample(p, 2)) for p in rng.sample(pairs, n)]
        others = [u for s in speakers if s != spk for u in sorted(utts[s])]
        seen = set()
        while len(seen) < min(n, len(own) * len(others)):
            pair = (rng.choice(own), rng.choice(others))
            if pair not in seen:
                seen.add(pair)
                trials.append((0, *pair))
    return trials
