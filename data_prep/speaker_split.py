"""Split a folder-per-speaker corpus by speaker into train and test halves.

Nothing is copied: the split is a set of trial lists that name only test
speakers. Given to a recipe as ``--verification_file``, such a list removes
its speakers from training (``prepare_folder`` excludes trial speakers), so
train and test share no speaker.

For every trial list of the corpus (``trials.txt``, ``trials_hard.txt`` ...)
the trials whose two utterances both belong to test speakers are kept, so the
lists keep their construction rules (e.g. same-gender non-targets). A corpus
without trial lists gets a generated ``trials.txt`` on the test speakers.

Restricted lists keep few trials (on ``speechocean762_dev``'s 62 test speakers, 992 target
and 476 non-target), so besides them the split writes (``all_pairs``, the default):

- ``trials_all.txt``: every pair of two test-half utterances, once (5,642 target and
  370,636 non-target pairs there);
- ``trials_all_hard.txt``: every target pair, and the non-target pairs whose speakers share
  gender and age group (child under 18, adult), when the corpus has a ``speakers.tsv`` with a
  ``speaker`` column and ``gender`` and / or ``age`` columns (how the corpus's own
  ``trials_hard.txt`` is made); not written without one.

Scoring them costs one embedding per test utterance, as the restricted lists do.

``fold`` 1 swaps the halves (the train half of fold 0 is tested, its test half trains), so
two folds make every speaker a test speaker once.

``python -m data_prep.speaker_split --data_folder ROOT --output_folder SPLIT
[--test_fraction 0.5] [--seed 0] [--fold 0] [--no_all_pairs]`` writes
``SPLIT/<list>.txt`` and ``SPLIT/split.json`` (speakers of each half, trial counts).

Example
-------
>>> from data_prep.synthetic_corpus import generate_corpus
>>> root = getfixture("tmp_path") / "corpus"
>>> _ = generate_corpus(root, n_speakers=6, n_held_out=2, utts_per_speaker=3,
...                     min_dur=0.3, max_dur=0.4, n_target_per_spk=2)
>>> info = split_speakers(root, root / "split", test_fraction=0.5, seed=0, trial_files=[])
>>> len(info["test_speakers"]), len(info["train_speakers"])
(3, 3)
>>> trials = (root / "split" / "trials.txt").read_text().split()
>>> all(p.split("/")[0] in info["test_speakers"] for p in trials[1::3] + trials[2::3])
True
>>> info["trials"]["trials_all.txt"]  # 3 speakers x 3 utterances: 9 target, 27 non-target pairs
{'target': 9, 'nontarget': 27}
>>> other = split_speakers(root, root / "f1", 0.5, seed=0, trial_files=[], fold=1)
>>> other["test_speakers"] == info["train_speakers"]
True
"""

import argparse
import csv
import json
import os
import random

import numpy as np
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import find_audio_files
from speechbrain_moco.dataio.trials import all_pair_trials, balanced_trials, read_trials, write_trials

logger = get_logger(__name__)
ADULT_AGE = 18  # the age group boundary of speechocean762's trials_hard.txt (child < 18 y)


def corpus_speakers(data_folder, extensions=(".wav", ".flac")):
    """Speaker folder -> sorted relative audio paths, for folders holding audio."""
    speakers = {}
    for name in sorted(os.listdir(data_folder)):
        folder = os.path.join(data_folder, name)
        if not os.path.isdir(folder):
            continue
        files = [f"{name}/{rel}" for rel in find_audio_files(folder, extensions)]
        if files:
            speakers[name] = files
    return speakers


def speaker_groups(data_folder):
    """Speaker -> (gender, age group) from the corpus's ``speakers.tsv``, or None.

    The file is tab-separated with a ``speaker`` column and ``gender`` and / or ``age``
    columns; the age group is ``child`` under 18 years and ``adult`` from 18. None when the
    file or both columns are absent (no hard list can be made).

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> rows = ["speaker gender age", "a f 6", "b m 30"]
    >>> _ = (root / "speakers.tsv").write_text("".join(r.replace(" ", chr(9)) + chr(10) for r in rows))
    >>> speaker_groups(root)
    {'a': ('f', 'child'), 'b': ('m', 'adult')}
    """
    path = os.path.join(data_folder, "speakers.tsv")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "speaker" not in rows[0] or not {"gender", "age"} & set(rows[0]):
        return None
    groups = {}
    for lineno, row in enumerate(rows, start=2):
        gender = row.get("gender", "").strip().lower()
        age = row.get("age", "").strip()
        try:
            band = "" if not age else ("child" if float(age) < ADULT_AGE else "adult")
        except ValueError:
            raise ValueError(f"{path}:{lineno}: age {age!r} is not a number") from None
        groups[row["speaker"].strip()] = (gender, band)
    return groups


def split_speakers(
    data_folder,
    output_folder,
    test_fraction=0.5,
    seed=0,
    trial_files=None,
    n_target_per_spk=16,
    fold=0,
    all_pairs=True,
):
    """Choose test speakers and write their trial lists; returns the ``split.json`` dict.

    Arguments
    ---------
    data_folder : str
        Corpus root (``<root>/<speaker>/**/*.wav|flac``).
    output_folder : str
        Where the filtered lists and ``split.json`` are written.
    test_fraction : float
        Fraction of speakers (rounded, at least 2 and at most all but 2) held out.
    seed : int
        Seed of the speaker draw (``random.Random(seed)`` over sorted speakers).
    trial_files : list of str, optional
        Lists relative to ``data_folder`` to filter; default: every ``trials*.txt``
        at its top level. When there is none (or ``[]``), ``trials.txt`` is generated.
    n_target_per_spk : int
        Target trials per test speaker of a generated list.
    fold : int
        0: the drawn speakers are the test half; 1: they train and the others are tested.
    all_pairs : bool
        Also write ``trials_all.txt`` (and ``trials_all_hard.txt`` with a ``speakers.tsv``).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    speakers = corpus_speakers(data_folder)
    if len(speakers) < 4:
        raise ValueError(f"{data_folder}: {len(speakers)} speaker folders; a split needs at least 4")
    n_test = min(max(2, round(test_fraction * len(speakers))), len(speakers) - 2)
    if fold not in (0, 1):
        raise ValueError(f"fold must be 0 or 1, got {fold}")
    test = sorted(random.Random(seed).sample(sorted(speakers), n_test))
    if fold == 1:
        test = sorted(set(speakers) - set(test))
    test_set = set(test)
    os.makedirs(output_folder, exist_ok=True)
    if trial_files is None:
        trial_files = sorted(
            f for f in os.listdir(data_folder) if f.startswith("trials") and f.endswith(".txt")
        )
    lists = {}
    for name in trial_files:
        kept = [
            t
            for t in read_trials(os.path.join(data_folder, name))
            if t[1].split("/")[0] in test_set and t[2].split("/")[0] in test_set
        ]
        lists[os.path.basename(name)] = kept
    if not lists:
        lists["trials.txt"] = balanced_trials(
            {s: speakers[s] for s in test}, n_target_per_spk, np.random.default_rng(seed)
        )
    if all_pairs:
        utts = {s: speakers[s] for s in test}
        lists["trials_all.txt"] = all_pair_trials(utts)
        groups = speaker_groups(data_folder)
        if groups is not None:
            lists["trials_all_hard.txt"] = all_pair_trials(utts, groups)
    counts = {}
    for name, trials in lists.items():
        n_target = sum(1 for t in trials if t[0] == 1)
        if name == "trials_all_hard.txt" and n_target == len(trials):
            logger.warning("%s: no two test speakers share gender and age group: not written", name)
            continue
        if n_target == 0 or n_target == len(trials):
            raise ValueError(
                f"{name}: the test speakers leave {n_target} target and "
                f"{len(trials) - n_target} non-target trials; change --seed or "
                "--test_fraction"
            )
        write_trials(os.path.join(output_folder, name), trials)
        counts[name] = {"target": n_target, "nontarget": len(trials) - n_target}
    info = {
        "data_folder": os.path.abspath(data_folder),
        "seed": seed,
        "test_fraction": test_fraction,
        "fold": fold,
        "test_speakers": test,
        "train_speakers": sorted(set(speakers) - test_set),
        "trials": counts,
        "trial_files": {name: os.path.abspath(os.path.join(output_folder, name)) for name in counts},
    }
    with open(os.path.join(output_folder, "split.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
    return info


def split_corpus(work_folder, data_folder, test_fraction=0.5, seed=0, fold=0):
    """Speaker split of ``data_folder`` in ``<work>/split`` (fold 0) or ``<work>/split_f1``
    (fold 1: the halves swapped), with the all-pairs lists (:func:`split_speakers`);
    reused when made with the same corpus, seed, fraction and fold."""
    folder = os.path.join(work_folder, "split" if fold == 0 else f"split_f{fold}")
    path = os.path.join(folder, "split.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        same = (info["data_folder"], info["seed"], info["test_fraction"], info.get("fold", 0)) == (
            os.path.abspath(data_folder),
            seed,
            test_fraction,
            fold,
        )
        if same and "trials_all.txt" in info["trial_files"]:
            return info
    return split_speakers(data_folder, folder, test_fraction, seed, fold=fold)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--test_fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trial_files", nargs="*", default=None)
    parser.add_argument("--fold", type=int, default=0, choices=(0, 1))
    parser.add_argument(
        "--no_all_pairs", action="store_true", help="do not write trials_all.txt / trials_all_hard.txt"
    )
    args = parser.parse_args(argv)
    info = split_speakers(
        args.data_folder,
        args.output_folder,
        args.test_fraction,
        args.seed,
        args.trial_files,
        fold=args.fold,
        all_pairs=not args.no_all_pairs,
    )
    print(
        json.dumps(
            {
                "train_speakers": len(info["train_speakers"]),
                "test_speakers": len(info["test_speakers"]),
                "trials": info["trials"],
            }
        )
    )


if __name__ == "__main__":
    main()
