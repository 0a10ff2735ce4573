"""Trial lists: parse (VoxCeleb ``1 a.wav b.wav`` and Kaldi ``a b target``), check, write,
generate, and the manifest of the utterances a list names.

Every trial is a ``(label, enrol, test)`` tuple, label 1 for a target trial.
"""

import itertools
import os

from speechbrain_moco.dataio.audio import AudioError, audio_frames
from speechbrain_moco.dataio.manifest import DATA_ROOT, utterance_id, write_manifest

_KALDI_LABELS = {"target": 1, "nontarget": 0}


def parse_trial_line(line, where="<trials>"):
    """Parse one trial line (VoxCeleb or Kaldi format); ``None`` for a blank line.

    Example
    -------
    >>> parse_trial_line("1 spk1/a.wav spk1/b.wav")
    (1, 'spk1/a.wav', 'spk1/b.wav')
    >>> parse_trial_line("spk1/a spk2/b nontarget")
    (0, 'spk1/a', 'spk2/b')
    """
    fields = line.split()
    if not fields:
        return None
    if len(fields) == 3:
        if fields[2].lower() in _KALDI_LABELS:
            return _KALDI_LABELS[fields[2].lower()], fields[0], fields[1]
        if fields[0] in ("0", "1"):
            return int(fields[0]), fields[1], fields[2]
    raise ValueError(
        f"{where}: malformed trial line {line.strip()!r}; expected "
        "'1|0 enrol test' (VoxCeleb) or 'enrol test target|nontarget' (Kaldi)"
    )


def iter_trials(path):
    """Yield ``(line number, (label, enrol, test))`` for each trial line of ``path``.

    The one trial-list parser: every reader of trial lists (recipes, preparations,
    splits) goes through it, so a malformed line is reported with its file and line.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            trial = parse_trial_line(line, where=f"{path}:{lineno}")
            if trial is not None:
                yield lineno, trial


def read_trials(path):
    """Read a trial list in VoxCeleb or Kaldi format (detected per line).

    Arguments
    ---------
    path : str or os.PathLike
        Trial file. Blank lines are skipped.

    Returns
    -------
    list of tuple(int, str, str)
        ``(label, enrol, test)`` with label 1 for target, 0 for non-target.

    Raises
    ------
    ValueError
        Naming the file and line number of a malformed line.

    Example
    -------
    >>> path = getfixture("tmp_path") / "trials.txt"
    >>> _ = path.write_text("1 s1/a.wav s1/b.wav\\n\\ns1/a s2/c nontarget\\n")
    >>> read_trials(path)
    [(1, 's1/a.wav', 's1/b.wav'), (0, 's1/a', 's2/c')]
    """
    return [trial for _, trial in iter_trials(path)]


def trial_ids(trials):
    """Map trial names (relative paths with extension, or IDs) to utterance IDs.

    Example
    -------
    >>> trial_ids([(1, "s1/a.wav", "s1/b.wav"), (0, "s1/a", "s2/c")])
    [(1, 's1/a', 's1/b'), (0, 's1/a', 's2/c')]
    """
    return [(label, utterance_id(e), utterance_id(t)) for label, e, t in trials]


def read_trial_ids(path, known, to_id=utterance_id, skipped=None):
    """Read a trial list and map each name to an utterance ID of ``known``.

    Arguments
    ---------
    path : str
        Trial list (VoxCeleb or Kaldi format).
    known : container
        The usable utterance IDs (e.g. a preparation's manifest rows by ID).
    to_id : callable
        Maps a name of the list to an utterance ID.
    skipped : dict, optional
        ``ID -> reason`` of files a preparation rejected (named in the error).

    Returns
    -------
    list of tuple(int, str, str)
        ``(label, enrol_id, test_id)``.

    Raises
    ------
    ValueError
        Naming the list and line of a malformed line, of a missing or skipped file, or
        saying the list is empty.

    Example
    -------
    >>> path = getfixture("tmp_path") / "trials.txt"
    >>> _ = path.write_text("1 s1/a.wav s1/b.wav\\n0 s1/a.wav s2/c.wav\\n")
    >>> read_trial_ids(path, {"s1/a", "s1/b"}, skipped={"s2/c": "0 frames"})
    Traceback (most recent call last):
    ...
    ValueError: ...trials.txt:2: 's2/c.wav' was skipped (0 frames)
    """
    skipped = skipped or {}
    trials = []
    for lineno, (label, *names) in iter_trials(path):
        ids = [to_id(name) for name in names]
        for name, uid in zip(names, ids):
            if uid not in known:
                why = (
                    f"was skipped ({skipped[uid]})" if uid in skipped else "names a file that does not exist"
                )
                raise ValueError(f"{path}:{lineno}: {name!r} {why}")
        trials.append((label, ids[0], ids[1]))
    if not trials:
        raise ValueError(f"{path}: the trial list is empty")
    return trials


def write_trials(path, trials, name_of=None):
    """Write ``(label, enrol, test)`` trials as ``label enrol test`` lines (VoxCeleb format).

    ``name_of`` maps each enrol / test entry to the name written (default: as given).
    Written atomically.
    """
    name_of = name_of or {}
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{label} {name_of.get(e, e)} {name_of.get(t, t)}\n" for label, e, t in trials)
    os.replace(tmp, path)


def balanced_trials(utts_by_spk, n_target_per_spk, rng):
    """Balanced target / non-target trials, no self or duplicate pairs.

    Up to ``n_target_per_spk`` target pairs per speaker (distinct pairs of its
    utterances), then as many non-target pairs as targets, drawn uniformly over
    speaker pairs; shuffled. ``rng`` is a ``numpy.random.Generator``.

    Example
    -------
    >>> import numpy as np
    >>> utts = {"a": ["a/1.wav", "a/2.wav"], "b": ["b/1.wav", "b/2.wav"]}
    >>> trials = balanced_trials(utts, 1, np.random.default_rng(0))
    >>> sorted(t[0] for t in trials)
    [0, 0, 1, 1]
    """
    targets, spks = [], sorted(utts_by_spk)
    for spk in spks:
        pairs = list(itertools.combinations(utts_by_spk[spk], 2))
        pick = rng.permutation(len(pairs))[: min(n_target_per_spk, len(pairs))]
        targets += [(1, *pairs[i]) for i in sorted(pick)]
    sizes = [len(utts_by_spk[spk]) for spk in spks]
    n_non = min(len(targets), (sum(sizes) ** 2 - sum(x**2 for x in sizes)) // 2)
    nontargets, seen = [], set()
    while len(nontargets) < n_non:
        a, b = rng.choice(len(spks), 2, replace=False)
        ua = utts_by_spk[spks[a]][rng.integers(len(utts_by_spk[spks[a]]))]
        ub = utts_by_spk[spks[b]][rng.integers(len(utts_by_spk[spks[b]]))]
        if frozenset((ua, ub)) not in seen:
            seen.add(frozenset((ua, ub)))
            nontargets.append((0, ua, ub))
    trials = targets + nontargets
    return [trials[i] for i in rng.permutation(len(trials))]


def all_pair_trials(utts_by_spk, group_of=None):
    """Every unordered pair of two different utterances, once: all target pairs and all
    non-target pairs (only those whose speakers share a group when ``group_of`` is given).

    Pairs are ordered as the speakers and their utterances are sorted, so the list is the
    same on every run. Scoring it costs one embedding per utterance.

    Arguments
    ---------
    utts_by_spk : dict
        Speaker -> utterance names (relative paths).
    group_of : dict, optional
        Speaker -> a hashable group (e.g. ``("f", "child")``); a speaker missing from it
        is in no group and gets no non-target trial.

    Returns
    -------
    list of tuple(int, str, str)
        ``(label, enrol, test)``: targets speaker by speaker, then non-targets.

    Example
    -------
    >>> utts = {"a": ["a/1.wav", "a/2.wav"], "b": ["b/1.wav"], "c": ["c/1.wav"]}
    >>> all_pair_trials(utts)[:2]
    [(1, 'a/1.wav', 'a/2.wav'), (0, 'a/1.wav', 'b/1.wav')]
    >>> len(all_pair_trials(utts)), len(all_pair_trials(utts, {"a": "x", "b": "x", "c": "y"}))
    (6, 3)
    """
    spks = sorted(utts_by_spk)
    names = {s: sorted(utts_by_spk[s]) for s in spks}
    trials = [(1, a, b) for s in spks for a, b in itertools.combinations(names[s], 2)]
    for i, s in enumerate(spks):
        for t in spks[i + 1 :]:
            if group_of is not None and (
                s not in group_of or t not in group_of or group_of[s] != group_of[t]
            ):
                continue
            trials += [(0, a, b) for a in names[s] for b in names[t]]
    return trials


def trial_list_path(verification_file, data_folder=None):
    """Absolute path of a trial list given as is or relative to ``data_folder``.

    ``None`` stays ``None``; a list that exists nowhere is a ``FileNotFoundError``.
    """
    if verification_file is None:
        return None
    if not os.path.isabs(verification_file) and not os.path.exists(verification_file) and data_folder:
        verification_file = os.path.join(data_folder, verification_file)
    if not os.path.isfile(verification_file):
        raise FileNotFoundError(f"trial list not found: {verification_file}")
    return os.path.abspath(verification_file)


def trial_manifest(
    trials, data_folder, csv_path, trials_path, sample_rate=16000, speaker_of=None, unreadable=None
):
    """Write the manifest of the unique utterances named in ``trials``; returns ``csv_path``.

    IDs are the names exactly as the trial list writes them (paths relative to
    ``data_folder``), so scores map back to the list. ``speaker_of`` (name -> speaker)
    fills ``spk_id``; without it ``spk_id`` is empty (a trial list names no speakers).
    A name that is not a file under ``data_folder`` raises ``FileNotFoundError``
    naming the list. With ``unreadable`` (a dict), a file whose header cannot be read is
    left out and recorded there (name -> reason) instead of raising.
    """
    rows, seen = [], set()
    for _, enrol, test in trials:
        for rel in (enrol, test):
            if rel in seen:
                continue
            seen.add(rel)
            path = os.path.join(data_folder, rel)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{trials_path}: names {rel}, not found under {data_folder}")
            try:
                frames = audio_frames(path)
            except AudioError as err:
                if unreadable is None:
                    raise
                unreadable[rel] = str(err).replace(f" {path}", "").replace(f"{path}: ", "")
                continue
            rows.append(
                {
                    "ID": rel,
                    "duration": frames / sample_rate,
                    "wav": f"{DATA_ROOT}/{rel}",
                    "start": 0,
                    "stop": frames,
                    "spk_id": speaker_of(rel) if speaker_of else "",
                }
            )
    write_manifest(rows, csv_path)
    return csv_path
