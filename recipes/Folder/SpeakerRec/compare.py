#!/usr/bin/env python3
"""Compare, on one corpus split by speaker and the same training settings:

1. MoCo, unsupervised (ECAPA, the Folder MoCo recipe's defaults);
2. supervised AAM-softmax from scratch (train_ecapa.yaml);
3. supervised, initialised from (1) (the same yaml, ``--init_from``);
4. pseudo-label refinement: cluster (1)'s embeddings of the training
   utterances, train (3)'s recipe on the pseudo speakers (no label used);
5. a second round: re-cluster with (4)'s encoder, train from (4).

Run::

    python recipes/Folder/SpeakerRec/compare.py --data_folder=ROOT --output_folder=OUT \
        [--test_fraction=0.5] [--split_seed=0] [--n_clusters=N] [--rounds=2] [--seeds 1987 1988]

Half the speakers (seeded) are held out; every trial list of the corpus
(``trials*.txt``) is restricted to them (``data_prep.speaker_split``), the
others train. ``--seeds`` repeats the supervised systems (scratch and each
MoCo-initialised one, from the same MoCo run) with more training seeds and
reports their means, since one run of each differs by noise. ``--proj_hidden``
adds a MoCo run with an MLP projection head and the supervised run initialised
from it; ``--encoder_lr_scale`` one initialised run whose encoder learns at
that factor of the learning rate; ``--freeze_epochs N`` one initialised run
whose encoder is frozen for N first epochs instead of the yaml's number (0:
fine-tuned from the first step); ``--rewarm_epochs N`` one initialised run whose encoder's
learning rate is re-warmed from 0 over N epochs after the freeze; ``--short_epochs N`` scratch and MoCo-init
again with an N-epoch supervised schedule (a smaller labelled budget, each
compared with the scratch run of its own schedule). Writes ``OUT/comparison.md``,
``OUT/comparison.json`` and a DET plot per trial list (``OUT/det_<list>.png``).
Stages run once: rerunning the command resumes or reuses them
(``tools/experiments.py``).
"""

import argparse
import json
import os
import shlex
import shutil
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".."))
sys.path.insert(0, ROOT)  # the experiment tooling in tools/ (not part of the installed library)

from speechbrain_moco.verification.plots import plot_det  # noqa: E402
from tools import experiments as ex  # noqa: E402

SYSTEMS = {
    "moco": "MoCo, no labels (cosine)",
    "scratch": "supervised AAM, from scratch",
    "moco_init": "supervised AAM, MoCo-initialised",
    "pl1": "pseudo-labels round 1 (from MoCo, no labels)",
    "pl2": "pseudo-labels round 2 (from round 1, no labels)",
}


def overridden(common, own):
    """``common`` stage arguments, less the ``--key=`` options that ``own`` sets, then ``own``
    (a system's own ``--number_of_epochs=`` wins over ``--stage_args``; the recipes refuse a
    key given twice)."""
    keys = {a.split("=", 1)[0] for a in own if a.startswith("--")}
    return [a for a in common if a.split("=", 1)[0] not in keys] + list(own)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--test_fraction", type=float, default=0.5)
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument(
        "--n_clusters", type=int, default=None, help="pseudo speakers (default: estimated by silhouette)"
    )
    parser.add_argument("--rounds", type=int, default=2, choices=(0, 1, 2))
    parser.add_argument(
        "--freeze_epochs",
        type=int,
        default=None,
        help="also run MoCo-init with the encoder frozen for this many first epochs "
        "instead of the yaml's freeze_epochs (0: fine-tuned from the first step)",
    )
    parser.add_argument(
        "--proj_hidden",
        type=int,
        default=None,
        help="also run MoCo with an MLP projection head of this width (MoCo v2 style: "
        "the encoder's embedding is not the contrastive space) and initialise "
        "supervised training from it",
    )
    parser.add_argument(
        "--encoder_lr_scale",
        type=float,
        default=None,
        help="also run MoCo-init (from moco_mlp with --proj_hidden) with the encoder "
        "at this factor of the learning rate (discriminative fine-tuning)",
    )
    parser.add_argument(
        "--short_epochs",
        type=int,
        default=None,
        help="also run scratch and MoCo-init (from moco_mlp with --proj_hidden) with "
        "this many supervised epochs, compared with each other",
    )
    parser.add_argument(
        "--rewarm_epochs",
        type=int,
        default=None,
        help="also run MoCo-init with the encoder's learning rate re-warmed from 0 over this "
        "many epochs after the freeze",
    )
    parser.add_argument(
        "--label_free",
        action="store_true",
        help="also run the label-free pipeline (label_free.py: MoCo with SSPS, then --rounds of "
        "pseudo-labels and AAM) and plain MoCo for every seed, scored by cosine and PLDA",
    )
    parser.add_argument(
        "--label_free_args",
        default="",
        help="extra arguments of the label-free pipeline, e.g. '--rounds=1 --moco_overrides={...}'",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[],
        help="extra training seeds for scratch and every MoCo-initialised system "
        "(the yaml's seed is the first)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--stage_args",
        default="",
        help="extra arguments for every training stage, e.g. '--number_of_epochs=20'",
    )
    parser.add_argument(
        "--results_folder", default=None, help="also copy comparison.md/.json and the DET plots here"
    )
    args = parser.parse_args(argv)

    if args.label_free and args.stage_args and not args.label_free_args:
        parser.error(
            "--stage_args changes MoCo's training but not the label-free pipeline's: give the "
            "pipeline the same budget with --label_free_args (its stages' overrides)"
        )
    work = os.path.abspath(args.output_folder)
    split = ex.split_corpus(work, args.data_folder, args.test_fraction, args.split_seed)
    lists = split["trial_files"]
    main_list = "trials.txt" if "trials.txt" in lists else sorted(lists)[0]
    runner = ex.StageRunner(work, args.device)
    extra = shlex.split(args.stage_args)
    trials = lists[main_list]

    # MoCo runs: name -> (description, extra training arguments)
    moco_runs = {"moco": (SYSTEMS["moco"], [])}
    # supervised runs: name -> (description, MoCo run it starts from or None, extra arguments)
    supervised = {"scratch": (SYSTEMS["scratch"], None, []), "moco_init": (SYSTEMS["moco_init"], "moco", [])}
    if args.proj_hidden:
        moco_runs["moco_mlp"] = (
            f"MoCo with a {args.proj_hidden}-wide MLP head, no labels (cosine)",
            [f"--proj_hidden={args.proj_hidden}"],
        )
        supervised["moco_mlp_init"] = ("supervised AAM, initialised from moco_mlp", "moco_mlp", [])
    source = "moco_mlp" if args.proj_hidden else "moco"
    if args.encoder_lr_scale is not None:
        supervised[f"{source}_init_lr{args.encoder_lr_scale:g}"] = (
            f"supervised AAM, initialised from {source}, encoder at {args.encoder_lr_scale:g} x the "
            "learning rate",
            source,
            [f"--encoder_lr_scale={args.encoder_lr_scale}"],
        )
    scratch_of = {}  # an initialised system -> its scratch run when that is not "scratch"
    if args.short_epochs:
        n = args.short_epochs
        supervised[f"scratch_e{n}"] = (
            f"supervised AAM, from scratch, {n} epochs",
            None,
            [f"--number_of_epochs={n}"],
        )
        supervised[f"{source}_init_e{n}"] = (
            f"supervised AAM, initialised from {source}, {n} epochs",
            source,
            [f"--number_of_epochs={n}"],
        )
        scratch_of[f"{source}_init_e{n}"] = f"scratch_e{n}"
    if args.freeze_epochs is not None:
        supervised[f"moco_init_frz{args.freeze_epochs}"] = (
            f"supervised AAM, MoCo-initialised, encoder frozen for {args.freeze_epochs} epochs",
            "moco",
            [f"--freeze_epochs={args.freeze_epochs}"],
        )
    if args.rewarm_epochs is not None:
        supervised[f"moco_init_rw{args.rewarm_epochs}"] = (
            f"supervised AAM, MoCo-initialised, encoder learning rate re-warmed over "
            f"{args.rewarm_epochs} epochs after the freeze",
            "moco",
            [f"--rewarm_epochs={args.rewarm_epochs}"],
        )
    if args.label_free:  # MoCo alone, for every seed: what the label-free systems must beat
        for seed in args.seeds:
            moco_runs[f"moco_seed{seed}"] = (f"{SYSTEMS['moco']}, training seed {seed}", [f"--seed={seed}"])
    seeded = list(supervised)  # what --seeds repeats
    for seed in args.seeds:
        for name in seeded:
            desc, init, more = supervised[name]
            supervised[f"{name}_seed{seed}"] = (
                f"{desc}, training seed {seed}",
                init,
                more + [f"--seed={seed}"],
            )

    # stages: the other MoCo runs first, each followed by what starts from it
    done = {}
    for name in sorted(moco_runs, key=lambda n: n == "moco"):
        done[name] = ex.moco_stage(
            runner, args.data_folder, trials, name=name, extra=overridden(extra, moco_runs[name][1])
        )
        for sup, (_, init, more) in supervised.items():
            if sup not in done and init in (None, name):
                done[sup] = ex.supervised_stage(
                    runner, args.data_folder, trials, sup, init_from=init, extra=overridden(extra, more)
                )
    prev = "moco"
    for r in range(1, args.rounds + 1):
        done[f"pl{r}_labels"] = ex.pseudo_label_stage(runner, f"pl{r}_labels", prev, "moco", args.n_clusters)
        done[f"pl{r}"] = ex.supervised_stage(
            runner, args.data_folder, trials, f"pl{r}", init_from=prev, labels=f"pl{r}_labels", extra=extra
        )
        prev = f"pl{r}"
    label_free = {}  # row name -> (description, training folder, stages it took)
    if args.label_free:
        for seed in [None] + list(args.seeds):
            sfx = "" if seed is None else f"_seed{seed}"
            done[f"lf{sfx}"] = ex.label_free_stage(
                runner, args.data_folder, trials, f"lf{sfx}", seed, shlex.split(args.label_free_args)
            )
            stages = ex.label_free_stages(runner.out(f"lf{sfx}"))
            # the pipeline's MoCo stage: "ssps" when it sampled positives, else "lf_moco"
            ssps = ex.uses_ssps(os.path.join(runner.out(f"lf{sfx}"), "moco"))
            first = ("ssps", "MoCo with SSPS, no labels") if ssps else ("lf_moco", "MoCo, no labels")
            names = {
                stage: first if stage == "moco" else (f"lf_{stage}", f"label-free {stage} (no labels)")
                for stage in stages
            }
            lf_names = ["moco"] + [names[stage][0] for stage in stages]
            for stage, seconds in stages.items():
                row, desc = names[stage]
                label_free[f"{row}{sfx}"] = (desc, os.path.join(runner.out(f"lf{sfx}"), stage), seconds)
    chain = {"pl1": ["moco", "pl1_labels", "pl1"], "pl2": ["moco", "pl1_labels", "pl1", "pl2_labels", "pl2"]}
    chain.update({name: [name] for name in moco_runs})
    chain.update({name: ([init] if init else []) + [name] for name, (_, init, _) in supervised.items()})
    # table order: the main systems, then the variants and seeds in the order they were added
    described = dict(
        {k: v[0] for k, v in moco_runs.items()},
        **{k: v[0] for k, v in supervised.items()},
        **{k: SYSTEMS[k] for k in ("pl1", "pl2")},
    )
    systems = {k: described[k] for k in SYSTEMS}
    systems.update(described)
    rows, evals = [], {name: {} for name in lists}
    for system, desc in systems.items():
        if system not in done:
            continue
        metrics = {}
        for name, path in lists.items():
            out = os.path.join(work, "eval", system, name.replace(".txt", ""))
            metrics[name] = ex.verify_run(runner.out(system), path, args.data_folder, out, args.device)
            evals[name][system] = out
        rows.append(
            {
                "system": system,
                "description": desc,
                "metrics": metrics,
                "train_seconds": done[system]["seconds"],
                "total_seconds": sum(done[s]["seconds"] for s in chain[system]),
                "stages": chain[system],
            }
        )
    plda = {}  # the label-free PLDA back-end of MoCo alone and of the last label-free stage
    for name, (desc, folder, seconds) in label_free.items():
        metrics = {}
        for list_name, path in lists.items():
            out = os.path.join(work, "eval", name, list_name.replace(".txt", ""))
            metrics[list_name] = ex.verify_run(folder, path, args.data_folder, out, args.device)
            evals[list_name][name] = out
        rows.append(
            {
                "system": name,
                "description": desc,
                "metrics": metrics,
                "train_seconds": seconds[0],
                "total_seconds": seconds[1],
                "stages": [folder],
            }
        )
    if args.label_free:
        last = lf_names[-1]
        for seed in [None] + list(args.seeds):
            sfx = "" if seed is None else f"_seed{seed}"
            for stem, folder in (("moco", runner.out(f"moco{sfx}")), (last, label_free[f"{last}{sfx}"][1])):
                name = f"{stem}_plda{sfx}"
                plda[name] = {
                    list_name: ex.verify_run(
                        folder,
                        path,
                        args.data_folder,
                        os.path.join(work, "eval", name, list_name.replace(".txt", "")),
                        args.device,
                        (),
                        "verification_plda.yaml",
                    )
                    for list_name, path in lists.items()
                }
    clusters = {}
    for r in range(1, args.rounds + 1):
        with open(os.path.join(runner.out(f"pl{r}_labels"), "clusters.json"), encoding="utf-8") as f:
            clusters[f"pl{r}"] = json.load(f)
    ref = {row["system"]: row for row in rows}

    def mean_eer(system, name):
        runs = [system] + [f"{system}_seed{seed}" for seed in args.seeds]
        return float(np.mean([ref[r]["metrics"][name]["EER"] for r in runs]))

    # each initialised system against the scratch run of the same schedule
    scratch_runs = {"scratch"} | set(scratch_of.values())
    reference = {s: scratch_of.get(s, "scratch") for s in seeded if s not in scratch_runs}
    means = {name: {s: mean_eer(s, name) for s in seeded} for name in lists}
    change = {
        name: {s: ex.relative_change(means[name][s], means[name][ref]) for s, ref in reference.items()}
        for name in lists
    }
    lf_summary = {}
    if args.label_free:  # means over the seeds; no label anywhere in these systems
        sfxs = [""] + [f"_seed{seed}" for seed in args.seeds]
        for name in lists:
            cosine = {r: float(np.mean([ref[r + x]["metrics"][name]["EER"] for x in sfxs])) for r in lf_names}
            with_plda = {
                stem: float(np.mean([plda[f"{stem}_plda{x}"][name]["EER"] for x in sfxs]))
                for stem in ("moco", last)
            }
            best = min(lf_names[1:], key=cosine.get)
            lf_summary[name] = {
                "cosine_mean_eer": cosine,
                "plda_mean_eer": with_plda,
                "best": best,
                "best_vs_moco_percent": ex.relative_change(cosine[best], cosine["moco"]),
                "last_vs_moco_plda_percent": ex.relative_change(with_plda[last], with_plda["moco"]),
            }
    plots = {}
    for name in lists:
        stem = name.replace(".txt", "")
        shown = set(SYSTEMS) | {"ssps", "lf_moco", "lf_pl1", "lf_pl2"}
        main_systems = {k: v for k, v in evals[name].items() if k in shown}  # not every seed
        plots[name] = plot_det(
            ex.det_systems(main_systems),
            os.path.join(work, f"det_{stem}.png"),
            title=f"{os.path.basename(os.path.normpath(args.data_folder))} test speakers, {stem}",
        )
    result = {
        "command": "python recipes/Folder/SpeakerRec/compare.py "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "machine": ex.machine_description(),
        "split": {k: split[k] for k in ("data_folder", "seed", "test_fraction", "trials")},
        "n_train_speakers": len(split["train_speakers"]),
        "n_test_speakers": len(split["test_speakers"]),
        "systems": rows,
        "moco_init_vs_scratch_eer_change_percent": change,
        "change_reference": reference,
        "mean_eer_over_seeds": means,
        "n_seeds": 1 + len(args.seeds),
        "label_free": lf_summary,
        "plda": plda,
        "pseudo_labels": {
            k: {
                f: v.get(f)
                for f in (
                    "n_clusters",
                    "train_rows",
                    "train_kept",
                    "train_speakers",
                    "quality_all",
                    "quality_kept",
                    "cluster_seconds",
                    "extract_seconds",
                )
            }
            for k, v in clusters.items()
        },
        "det_plots": plots,
    }
    lines = [
        f"# Pretraining and pseudo-label comparison on {result['split']['data_folder']}",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Speakers: {ex.split_summary(split)}",
        "",
        ex.results_table(rows, list(lists)),
        "",
        "train s: wall seconds of the system's own stage(s); total s: including the MoCo "
        "pretraining and pseudo-labelling it starts from. Cosine scoring, no score normalisation.",
        "",
    ]
    over = f"mean of {1 + len(args.seeds)} training seeds" if args.seeds else "one training seed"
    for name, values in change.items():
        for system, value in values.items():
            base = reference[system]
            lines.append(
                f"- {system} vs {base}, {name} ({over}): EER {means[name][system]:.2f}% "
                f"vs {means[name][base]:.2f}% ({value:+.1f}% relative)"
            )
    for name, summary in lf_summary.items():
        cos, pl = summary["cosine_mean_eer"], summary["plda_mean_eer"]
        lines.append(
            f"- label-free, {name} ({over}): cosine EER "
            + ", ".join(f"{k} {v:.2f}%" for k, v in cos.items())
            + f"; best {summary['best']} ({summary['best_vs_moco_percent']:+.1f}% relative to MoCo); "
            + "PLDA on pseudo-speakers "
            + ", ".join(f"{k} {v:.2f}%" for k, v in pl.items())
            + f" ({summary['last_vs_moco_plda_percent']:+.1f}%)"
        )
    for k, v in result["pseudo_labels"].items():
        q = v["quality_all"] or {}
        lines.append(
            f"- {k} pseudo-labels: {v['n_clusters']} clusters, {v['train_kept']}/{v['train_rows']} "
            f"training utterances kept in {v['train_speakers']} pseudo speakers; against the "
            f"true speakers (report only): NMI {q.get('nmi', float('nan')):.3f}, purity "
            f"{q.get('purity', float('nan')):.3f}"
        )
    text = "\n".join(lines) + "\n"
    with open(os.path.join(work, "comparison.md"), "w", encoding="utf-8") as f:
        f.write(text)
    ex.write_json(os.path.join(work, "comparison.json"), result)
    if args.results_folder:
        os.makedirs(args.results_folder, exist_ok=True)
        for path in [os.path.join(work, "comparison.md"), os.path.join(work, "comparison.json")] + list(
            plots.values()
        ):
            shutil.copy(path, args.results_folder)
    print(text)
    return result


if __name__ == "__main__":
    main()
