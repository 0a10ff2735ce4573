#!/usr/bin/env python3
"""Compare systems on one corpus split by speaker, over training seeds and folds, with
intervals that say what the data can resolve.

Run::

    python recipes/Folder/SpeakerRec/compare.py --data_folder=ROOT --output_folder=CMP \
        [--seeds 1986 1987 1988] [--folds 2] [--systems moco scratch moco_init ...] \
        [--variant NAME=BASE:ARGS ...] [--compare B:A ...] [--lists trials_all.txt ...]

Half the speakers (``--split_seed``) are held out (``data_prep.speaker_split``); with
``--folds 2`` the split is also run the other way round, so every speaker is a test speaker
once. Each fold's test half is scored on every pair of its utterances (``trials_all.txt``)
and, when the corpus has a ``speakers.tsv``, on every target pair against same-gender,
same-age-group non-targets (``trials_all_hard.txt``). Every trained system runs once per
seed of ``--seeds`` (default three) in each fold:

- ``moco``: MoCo ECAPA (``moco.yaml``), no labels, cosine;
- ``moco_xvector``: MoCo x-vector (``moco_xvector.yaml``), no labels, cosine;
- ``moco_ssps``: MoCo ECAPA whose last epochs sample positives from other utterances of a
  pseudo-class (``moco_ssps.yaml``, SSPS), no labels, cosine;
- ``scratch``: supervised AAM-softmax ECAPA (``train_ecapa.yaml``) on the train speakers' labels;
- ``moco_init``: the same, initialised from ``moco`` of the same seed;
- ``lf``: the label-free pipeline's round 1 (``label_free.py --moco_run=`` that ``moco``:
  pseudo speakers, AAM), its ``final`` scored by cosine; no label anywhere;
- ``moco_plda``: ``moco`` scored by PLDA fitted on k-means pseudo-speakers
  (``verification_plda.yaml``), no labels.

``--variant NAME=BASE:ARGS`` adds a system: ``BASE`` with ``ARGS`` added to its own stage
(e.g. ``moco_sent=moco:--feature_norm=sentence``, ``moco_init_rw0=moco_init:--rewarm_epochs=0``,
``lf_r2=lf:--rounds=2``); it is compared with its base. Each system gets its mean EER and
minDCF(0.01) over folds and seeds with a 95 % interval over speakers (resampled) and seeds
(redrawn), and the standard deviation over seeds; each comparison (B vs A: ``moco_init`` vs
``scratch``, ``lf``, ``moco_plda``, ``moco_ssps`` and ``moco_xvector`` vs ``moco``, every
variant vs its base, and ``--compare B:A``) the mean paired difference, its interval, the half-width of that
interval (the smallest difference this protocol resolves) and a verdict that names a winner
only when the interval excludes 0. Writes ``CMP/comparison.md``, ``CMP/comparison.json`` and a
DET plot per list. Stages run once (``speechbrain_moco.experiments.runner``): rerunning the
command reuses or resumes them; a stage whose command, yaml values or earlier stage changed
runs again.
"""

import argparse
import json
import os
import shlex
import shutil
import sys

import numpy as np

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
from data_prep.speaker_split import split_corpus
from speechbrain_moco.cli import user_errors
from speechbrain_moco.experiments import report, stages
from speechbrain_moco.experiments.evidence import Evidence, comparison_table, summary_table
from speechbrain_moco.experiments.runner import StageRunner
from speechbrain_moco.verification import read_scores
from speechbrain_moco.verification.plots import plot_det

# name -> (kind, description, yaml, the system it starts from)
SYSTEMS = {
    "moco": ("moco", "MoCo ECAPA, no labels, cosine", "moco.yaml", None),
    "moco_xvector": ("moco", "MoCo x-vector, no labels, cosine", "moco_xvector.yaml", None),
    "moco_ssps": (
        "moco",
        "MoCo ECAPA with SSPS in its last epochs (moco_ssps.yaml), no labels",
        "moco_ssps.yaml",
        None,
    ),
    "scratch": ("sup", "supervised AAM ECAPA from scratch, train-speaker labels", "train_ecapa.yaml", None),
    "moco_init": ("sup", "supervised AAM ECAPA initialised from moco", "train_ecapa.yaml", "moco"),
    "lf": ("lf", "label-free round 1: AAM on moco's pseudo speakers, no labels", None, "moco"),
    "moco_plda": (
        "score",
        "moco, PLDA on k-means pseudo-speakers, no labels",
        "verification_plda.yaml",
        "moco",
    ),
}
DEFAULT_PAIRS = [
    ("moco_init", "scratch"),
    ("moco", "scratch"),
    ("lf", "moco"),
    ("moco_plda", "moco"),
    ("moco_xvector", "moco"),
    ("moco_ssps", "moco"),
    ("lf", "moco_init"),
]
DEFAULT_LISTS = ["trials_all.txt", "trials_all_hard.txt"]


def parse_variant(text, known):
    """``NAME=BASE:ARGS`` -> ``(name, base, [args])``.

    Example
    -------
    >>> parse_variant("m2=moco:--lr=0.1 --queue_size=64", {"moco"})
    ('m2', 'moco', ['--lr=0.1', '--queue_size=64'])
    """
    if "=" not in text or ":" not in text.split("=", 1)[1]:
        raise ValueError(f"--variant {text!r}: expected NAME=BASE:ARGS")
    name, rest = text.split("=", 1)
    base, args = rest.split(":", 1)
    if base not in known:
        raise ValueError(
            f"--variant {text!r}: unknown base system {base!r} (one of {', '.join(sorted(known))})"
        )
    if name in known:
        raise ValueError(f"--variant {text!r}: {name!r} is already a system")
    return name, base, shlex.split(args)


def overridden(common, own):
    """``common`` stage arguments, less the ``--key=`` options that ``own`` sets, then ``own``.

    Example
    -------
    >>> overridden(["--lr=1", "--seed=2"], ["--lr=3"])
    ['--seed=2', '--lr=3']
    """
    keys = {a.split("=", 1)[0] for a in own if a.startswith("--")}
    return [a for a in common if a.split("=", 1)[0] not in keys] + list(own)


def seed_cache(src, dst):
    """Link the embedding caches of a finished scoring into another scoring's folder of the
    same run (its lists name a subset of the same utterances: nothing is embedded twice)."""
    if not os.path.isdir(src) or os.path.exists(dst):
        return
    os.makedirs(dst)
    for name in ("embeddings.pt", "train_embeddings.pt"):
        if os.path.isfile(os.path.join(src, name)):
            os.link(os.path.join(src, name), os.path.join(dst, name))


def run_system(runner, name, spec, fold, seed, ctx):
    """Train (when needed) and score system ``name`` for one fold and seed; returns
    ``({list: eval folder}, train seconds, extra report)``."""
    kind, _, yaml, source, extra = spec
    prefix = f"f{fold}/s{seed}"
    data, trials, lists = ctx["data_folder"], ctx["trials"][fold], ctx["lists"][fold]
    seed_arg = [f"--seed={seed}"]
    info, seconds = {}, 0.0
    if kind == "moco":
        run_folder = f"{prefix}/{name}"
        done = stages.moco_stage(
            runner,
            run_folder,
            data,
            trials,
            yaml,
            overridden(ctx["stage_args"] + ctx["moco_args"], seed_arg + extra),
        )
        seconds = done["seconds"]
    elif kind == "sup":
        run_folder = f"{prefix}/{name}"
        init = f"{prefix}/{source}" if source else None
        done = stages.supervised_stage(
            runner,
            run_folder,
            data,
            trials,
            yaml,
            init,
            extra=overridden(ctx["stage_args"], seed_arg + extra),
        )
        seconds = done["seconds"]
    elif kind == "lf":
        run_folder = f"{prefix}/{name}"
        done = stages.label_free_stage(
            runner,
            run_folder,
            data,
            trials,
            moco=f"{prefix}/{source}",
            seed=seed,
            extra=ctx["lf_args"] + extra,
        )
        seconds = done["seconds"]
        clusters = os.path.join(runner.out(run_folder), "pl1_labels", "clusters.json")
        if os.path.isfile(clusters):
            with open(clusters, encoding="utf-8") as f:
                c = json.load(f)
            quality = c.get("quality_all") or {}
            info = {
                "n_clusters": c.get("n_clusters"),
                "nmi": quality.get("nmi"),
                "purity": quality.get("purity"),
            }
        run_folder = (run_folder, "final")
    else:  # another back-end on a trained system's run
        run_folder = f"{prefix}/{source}"
    evals, first = {}, None
    for list_name, path in lists.items():
        score_name = f"{prefix}/eval/{name}/{list_name.replace('.txt', '')}"
        if first is not None:
            seed_cache(runner.out(first), runner.out(score_name))
        score_yaml = yaml if kind == "score" else "verification_cosine.yaml"
        stages.score_stage(
            runner, score_name, run_folder, path, data, score_yaml, extra if kind == "score" else ()
        )
        evals[list_name] = runner.out(score_name)
        first = first or score_name
    return evals, seconds, info


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--test_fraction", type=float, default=0.5)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=1, choices=(1, 2))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1986, 1987, 1988])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--variant", action="append", default=[], help="NAME=BASE:ARGS (repeatable)")
    parser.add_argument("--compare", action="append", default=[], help="B:A, another comparison")
    parser.add_argument("--lists", nargs="+", default=None, help="trial lists of the split to score")
    parser.add_argument("--resamples", type=int, default=1000, help="speaker bootstrap resamples")
    parser.add_argument("--stage_args", default="", help="extra arguments of every training stage")
    parser.add_argument(
        "--moco_args", default="", help="extra arguments of the MoCo stages only (e.g. --queue_size=8)"
    )
    parser.add_argument("--label_free_args", default="", help="extra arguments of label_free.py")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--results_folder", default=None, help="also copy the results here")
    parser.add_argument(
        "--run_folds",
        type=int,
        nargs="+",
        default=None,
        help="only train and score these folds, and write no report (e.g. one process per fold, "
        "each with OMP_NUM_THREADS=1); a later call without it reuses every stage and reports",
    )
    args = parser.parse_args(argv)

    specs = {}
    for name in args.systems:
        kind, desc, yaml, source = SYSTEMS[name]
        if source and source not in args.systems:
            parser.error(f"system {name} starts from {source}: add it to --systems")
        specs[name] = (kind, desc, yaml, source, [])
    bases = {}
    for text in args.variant:
        try:
            name, base, extra = parse_variant(text, set(specs))
        except ValueError as err:
            parser.error(str(err))
        kind, desc, yaml, source, _ = specs[base]
        specs[name] = (kind, f"{desc}, with {' '.join(extra)}", yaml, source, extra)
        bases[name] = base
    pairs = [p for p in DEFAULT_PAIRS if p[0] in specs and p[1] in specs] + list(bases.items())
    for text in args.compare:
        b, _, a = text.partition(":")
        if b not in specs or a not in specs:
            parser.error(f"--compare {text}: both systems must run")
        pairs.append((b, a))

    work = os.path.abspath(args.output_folder)
    splits = [
        split_corpus(work, args.data_folder, args.test_fraction, args.split_seed, fold)
        for fold in range(args.folds)
    ]
    available = [set(s["trial_files"]) for s in splits]
    wanted = args.lists or [n for n in DEFAULT_LISTS if all(n in a for a in available)]
    for name in wanted:
        if not all(name in a for a in available):
            parser.error(
                f"--lists: {name} is not a list of the split (it has {', '.join(sorted(available[0]))})"
            )
    main_list = "trials.txt" if "trials.txt" in available[0] else sorted(available[0])[0]
    ctx = {
        "data_folder": args.data_folder,
        "trials": [s["trial_files"][main_list] for s in splits],  # training: excludes the test half
        "lists": [{n: s["trial_files"][n] for n in wanted} for s in splits],
        "stage_args": shlex.split(args.stage_args),
        "lf_args": shlex.split(args.label_free_args),
        "moco_args": shlex.split(args.moco_args),
    }
    runner = StageRunner(work, args.device)
    evidence = Evidence(args.resamples)
    runs, order = {}, sorted(specs, key=lambda n: {"moco": 0, "sup": 1, "lf": 2, "score": 3}[specs[n][0]])
    for fold in args.run_folds if args.run_folds is not None else range(args.folds):
        for seed in args.seeds:
            for name in order:
                evals, seconds, info = run_system(runner, name, specs[name], fold, seed, ctx)
                for list_name, folder in evals.items():
                    evidence.add(name, list_name, fold, seed, folder)
                runs.setdefault(name, []).append(
                    {"fold": fold, "seed": seed, "train_seconds": seconds, **info}
                )

    summaries = {n: {ln: evidence.summary(n, ln) for ln in wanted} for n in specs}
    comparisons = [(b, a, ln, evidence.compare(a, b, ln)) for b, a in pairs for ln in wanted]
    plots = {}
    for list_name in wanted:
        first = {n: evidence.folders[n][list_name][(0, args.seeds[0])] for n in specs}
        systems = {}
        for n, folder in first.items():
            _, _, scores, labels = read_scores(os.path.join(folder, "scores.txt"))
            systems[n] = (scores, labels)
        intervals = {}
        for n, folder in first.items():
            with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
                intervals[n] = json.load(f)["EER_ci95"]
        stem = list_name.replace(".txt", "")
        plots[list_name] = plot_det(
            systems,
            os.path.join(work, f"det_{stem}.png"),
            title=f"{stem}, fold 0, seed {args.seeds[0]} (one run each)",
            intervals=intervals,
        )
    command = report.shown_command("python recipes/Folder/SpeakerRec/compare.py", argv)
    result = {
        "command": command,
        "machine": report.machine_description(),
        "data_folder": report.shown_path(args.data_folder),
        "folds": [
            {k: s[k] for k in ("seed", "fold", "test_fraction", "trials")}
            | {"n_train_speakers": len(s["train_speakers"]), "n_test_speakers": len(s["test_speakers"])}
            for s in splits
        ],
        "seeds": args.seeds,
        "lists": wanted,
        "resamples": args.resamples,
        "systems": {
            n: {
                "description": specs[n][1],
                "summary": summaries[n],
                "runs": runs[n],
                "mean_train_seconds": float(np.mean([r["train_seconds"] for r in runs[n]])),
            }
            for n in specs
        },
        "comparisons": [{"B": b, "A": a, "list": ln, **d} for b, a, ln, d in comparisons],
        "det_plots": {k: os.path.basename(v) for k, v in plots.items()},
    }
    lines = [
        f"# Systems compared on {result['data_folder']}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {result['machine']}  ",
    ]
    lines += [f"Fold {s['fold']}: {report.split_summary(s)}  " for s in splits]
    lines += [
        f"Seeds: {', '.join(map(str, args.seeds))}; intervals: 95 %, {args.resamples} resamples of the "
        "test speakers, each with the seeds redrawn; folds averaged.",
        "",
        summary_table(evidence, list(specs), wanted, {n: specs[n][1] for n in specs}),
        "",
    ]
    lf_rows = [r for n in specs if specs[n][0] == "lf" for r in runs[n] if r.get("n_clusters") is not None]
    for n in (n for n in specs if specs[n][0] == "lf"):
        got = [r for r in runs[n] if r.get("n_clusters") is not None]
        if got:
            lines.append(
                f"- {n} pseudo-labels (report only, never used in training): "
                f"{np.mean([r['n_clusters'] for r in got]):.1f} clusters on average for "
                f"{len(splits[0]['train_speakers'])} training speakers, NMI "
                f"{np.mean([r['nmi'] or np.nan for r in got]):.3f}, purity "
                f"{np.mean([r['purity'] or np.nan for r in got]):.3f} ({len(got)} runs)"
            )
    lines += [
        "",
        "Comparisons (B - A, EER points; negative: B has the lower EER). A verdict names a "
        "winner only when the 95 % interval excludes 0; 'resolvable' is the interval's half-width, "
        "the smallest difference this protocol can detect.",
        "",
        comparison_table(comparisons),
        "",
        "train s: "
        + ", ".join(f"{n} {result['systems'][n]['mean_train_seconds']:.0f}" for n in specs)
        + " (mean wall seconds of a system's own stage on this machine).",
    ]
    if lf_rows:
        result["pseudo_labels"] = lf_rows
    text = "\n".join(lines) + "\n"
    with open(os.path.join(work, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(text)
    report.write_json(os.path.join(work, "comparison.json"), result)
    if args.results_folder:
        os.makedirs(args.results_folder, exist_ok=True)
        for path in [os.path.join(work, "comparison.md"), os.path.join(work, "comparison.json")]:
            shutil.copy(path, args.results_folder)
        for path in plots.values():
            shutil.copy(path, args.results_folder)
    print(text)
    return result


if __name__ == "__main__":
    with user_errors("compare.py"):  # a user's mistake: one line (SBMOCO_TRACEBACK=1: the trace)
        main()
