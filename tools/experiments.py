"""Run and compare systems on one corpus split: the engine of the comparison
script (``recipes/Folder/SpeakerRec/compare.py``) and of the quality benchmark
(``benchmarks/quality.py``). Experiment tooling, not part of the library.

Every training stage is the recipe's own command line, run as a subprocess in
the repository root with its log in ``<work>/logs/<stage>.log``. A finished
stage leaves ``<work>/<stage>.done.json`` (command, seconds, a digest of each
hyperparameter file the command names) and is not run again by the same command,
so two scripts pointed at the same work folder share their runs, and an
interrupted comparison resumes (an interrupted training resumes from its
checkpoint). A stage finished by another command, or from a yaml file that has
changed since (a new default), is an error, not a silent reuse.

Trained systems are scored by the recipe's ``verify.py`` (a subprocess, exactly the
user's command); untrained ones (feature statistics, a randomly initialised encoder)
by :mod:`tools.baselines`.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER_MOCO = "recipes/Folder/MoCo"
FOLDER_SUP = "recipes/Folder/SpeakerRec"


class StageRunner:
    """Run recipe command lines once each inside a work folder.

    Arguments
    ---------
    work_folder : str
        Outputs of every stage (``<work>/<stage>/``), logs and done markers.
    device : str
        ``--device`` given to every stage.
    """

    def __init__(self, work_folder, device="cpu"):
        self.work = os.path.abspath(work_folder)
        self.device = device
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)

    def out(self, name):
        """Output folder of stage ``name``."""
        return os.path.join(self.work, name)

    def run(self, name, args):
        """Run ``python ARGS --output_folder=<work>/<name> --device=D`` unless done.

        Returns the done record ``{"cmd", "seconds", "resumed"}``.
        """
        cmd = [str(a) for a in args] + [f"--output_folder={self.out(name)}", f"--device={self.device}"]
        marker = os.path.join(self.work, f"{name}.done.json")
        digests = hparams_digests(cmd)
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as f:
                done = json.load(f)
            if not same_command(done["cmd"], cmd):
                raise ValueError(
                    f"{marker} was made by another command:\n  {done['cmd']}\nnow:\n  {cmd}\n"
                    "use another work folder, or delete the stage to rerun it"
                )
            old = done["hparams_sha256"]
            if old != digests:
                changed = sorted(k for k in set(old) | set(digests) if old.get(k) != digests.get(k))
                raise ValueError(
                    f"{marker}: {', '.join(changed)} changed since the stage ran; "
                    "use another work folder, or delete the stage to rerun it"
                )
            logger.info("stage %s already done (%.0f s)", name, done["seconds"])
            return done
        resumed = os.path.isdir(self.out(name))
        log_path = os.path.join(self.work, "logs", f"{name}.log")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        logger.info("stage %s: %s", name, " ".join(cmd))
        start = time.time()
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.run(
                [sys.executable] + cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        seconds = time.time() - start
        if proc.returncode != 0:
            with open(log_path, encoding="utf-8") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"stage {name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        done = {"cmd": cmd, "seconds": round(seconds, 1), "resumed": resumed, "hparams_sha256": digests}
        with open(marker, "w", encoding="utf-8") as f:
            json.dump(done, f, indent=2)
        return done


def _existing_path(value):
    """``value`` as the real path of an existing file or folder (relative to the repository),
    else None."""
    path = value if os.path.isabs(value) else os.path.join(ROOT, value)
    return os.path.realpath(path) if value and os.path.exists(path) else None


def _canonical(arg):
    """``--key=value`` with an existing path value made absolute (relative to the repository)."""
    if arg.startswith("--") and "=" in arg:
        key, value = arg.split("=", 1)
        if _existing_path(value):
            return f"{key}={_existing_path(value)}"
    return arg


def hparams_digests(cmd):
    """SHA-256 of each existing ``.yaml`` file a command names (positional or ``--key=``),
    keyed by its path relative to the repository (absolute outside it).

    Example
    -------
    >>> hparams_digests(["recipes/Folder/MoCo/train_moco.py", "--lr=0.1"])
    {}
    >>> list(hparams_digests(["x.py", "recipes/Folder/MoCo/hparams/moco.yaml"]))
    ['recipes/Folder/MoCo/hparams/moco.yaml']
    """
    out = {}
    for arg in cmd:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        real = _existing_path(value) if value.endswith((".yaml", ".yml")) else None
        if real and os.path.isfile(real):
            rel = os.path.relpath(real, os.path.realpath(ROOT))
            out[real if rel.startswith("..") else rel] = _file_digest(real)
    return out


def same_command(a, b):
    """True when two stage commands are the same up to how their paths are spelled."""
    return [_canonical(x) for x in a] == [_canonical(x) for x in b]


def verify_run(
    run_folder, trials, data_folder, out_dir, device="cpu", extra=(), yaml="verification_cosine.yaml"
):
    """Score ``trials`` with a training run's encoder: ``verify.py`` of the Folder MoCo
    recipe with its ``yaml`` (cosine by default, or ``verification_plda.yaml``), as a
    subprocess; returns its ``metrics.json``.

    The scoring is reused (``out_dir/score.done.json``) when the command, its yaml, the
    trial list and the run's checkpoints are those of the last scoring in ``out_dir``."""
    cmd = [
        sys.executable,
        os.path.join(FOLDER_MOCO, "verify.py"),
        os.path.join(FOLDER_MOCO, "hparams", yaml),
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
        f"--pretrain_path={run_folder}",
        f"--output_folder={out_dir}",
        f"--device={device}",
    ] + list(extra)
    record = {
        "cmd": [_canonical(a) for a in cmd[1:]],
        "hparams_sha256": hparams_digests(cmd),
        "trials_sha256": _file_digest(trials),
        "checkpoints": _checkpoint_fingerprint(run_folder),
    }
    marker = os.path.join(out_dir, "score.done.json")
    metrics_path = os.path.join(out_dir, "metrics.json")
    if os.path.isfile(marker) and os.path.isfile(metrics_path):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == record:
                with open(metrics_path, encoding="utf-8") as m:
                    return json.load(m)
    if os.path.isfile(marker):
        os.remove(marker)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scoring {run_folder} on {trials} failed:\n{proc.stderr[-3000:]}")
    with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
    write_json(marker, record)
    return metrics


def _file_digest(path):
    """SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _checkpoint_fingerprint(run_folder):
    """``[relative path, size, mtime_ns]`` of every file under the run's ``save/`` folder
    (the whole run folder when it has none): changes whenever the run trains again."""
    root = os.path.realpath(run_folder)
    save = os.path.join(root, "save")
    top = save if os.path.isdir(save) else root
    out = []
    for dirpath, _, files in os.walk(top):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            stat = os.stat(path)
            out.append([os.path.relpath(path, root), stat.st_size, stat.st_mtime_ns])
    return sorted(out)


def det_systems(eval_dirs):
    """``{name: (scores, labels)}`` read from each evaluation folder's scores.txt."""
    from speechbrain_moco.verification import read_scores

    out = {}
    for name, folder in eval_dirs.items():
        _, _, scores, labels = read_scores(os.path.join(folder, "scores.txt"))
        out[name] = (scores, labels)
    return out


def results_table(rows, lists):
    """Markdown table: one row per system, EER and minDCF(0.01) per trial list."""
    head = "| system | " + " | ".join(f"EER % ({n}) | minDCF0.01 ({n})" for n in lists)
    head += " | train s | total s |"
    lines = [head, "|" + "---|" * (2 * len(lists) + 3)]
    for row in rows:
        cells = []
        for n in lists:
            m = row["metrics"][n]
            cells += [f"{m['EER']:.2f}", f"{m['minDCF_p0.01']:.3f}"]
        lines.append(
            f"| {row['system']} | "
            + " | ".join(cells)
            + f" | {row['train_seconds']:.0f} | {row['total_seconds']:.0f} |"
        )
    return "\n".join(lines)


def split_summary(split):
    """One line: speakers of each half, split seed, trials per list."""
    return (
        f"{len(split['train_speakers'])} train / {len(split['test_speakers'])} test speakers "
        f"(split seed {split['seed']}); trials per list: "
        + ", ".join(
            f"{k}: {v['target']} target + {v['nontarget']} non-target" for k, v in split["trials"].items()
        )
    )


def relative_change(new, ref):
    """Relative change of ``new`` against ``ref`` in percent (negative = lower)."""
    return float(100.0 * (new - ref) / ref) if ref else float("nan")


def machine_description():
    """One line naming the machine the numbers come from."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, torch {torch.__version__}"
    )


def write_json(path, obj):
    """Write ``obj`` as indented JSON (numpy scalars converted)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(type(o).__name__)

    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=default)


def benchmark_parser(doc, work_name):
    """The options every benchmark shares: ``--data_folder`` (default the shared
    speechocean762_dev), ``--work_folder`` (``results/benchmarks/<work_name>``), ``--device``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(
        "--data_folder", default=os.path.join(ROOT, "..", "shared", "data", "speechocean762_dev")
    )
    parser.add_argument("--work_folder", default=os.path.join(ROOT, "results", "benchmarks", work_name))
    parser.add_argument("--device", default="cpu")
    return parser


def write_results(out, result, lines):
    """A benchmark's results: ``OUT.json`` (``result``) and ``OUT.md`` (``lines``), printed."""
    write_json(out + ".json", result)
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


# ------------------------------------------------------------ shared stages
def split_corpus(work_folder, data_folder, test_fraction=0.5, seed=0):
    """Speaker split of ``data_folder`` in ``<work>/split`` (see ``data_prep.speaker_split``)."""
    from data_prep.speaker_split import split_speakers

    path = os.path.join(work_folder, "split", "split.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        if (info["data_folder"], info["seed"], info["test_fraction"]) == (
            os.path.abspath(data_folder),
            seed,
            test_fraction,
        ):
            return info
    return split_speakers(data_folder, os.path.join(work_folder, "split"), test_fraction, seed)


def moco_stage(runner, data_folder, trials, yaml="moco.yaml", name="moco", extra=()):
    """MoCo training (no labels) on the train speakers of the split."""
    args = [
        f"{FOLDER_MOCO}/train_moco.py",
        f"{FOLDER_MOCO}/hparams/{yaml}",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
    ] + list(extra)
    return runner.run(name, args)


def supervised_stage(
    runner, data_folder, trials, name, yaml="train_ecapa.yaml", init_from=None, labels=None, extra=()
):
    """AAM-softmax training on true labels, or on a pseudo-label folder ``labels``."""
    args = [
        f"{FOLDER_SUP}/train_speaker_embeddings.py",
        f"{FOLDER_SUP}/hparams/{yaml}",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
    ]
    if init_from is not None:
        args.append(f"--init_from={runner.out(init_from)}")
    if labels is not None:
        args += [
            f"--train_annotation={runner.out(labels)}/train.csv",
            f"--valid_annotation={runner.out(labels)}/valid.csv",
        ]
    return runner.run(name, args + list(extra))


def pseudo_label_stage(runner, name, pretrain, manifests_of, n_clusters=None, extra=()):
    """Cluster the training utterances embedded by run ``pretrain``.

    ``manifests_of`` names the run whose own (true-label, unfiltered) manifests
    list the utterances, so later rounds re-cluster every utterance rather than
    the rows an earlier filter kept.
    """
    manifests = os.path.join(runner.out(manifests_of), "manifests")
    args = [
        f"{FOLDER_SUP}/pseudo_labels.py",
        f"{FOLDER_SUP}/hparams/pseudo_labels.yaml",
        f"--pretrain_path={runner.out(pretrain)}",
        f"--train_annotation={manifests}/train.csv",
        f"--valid_annotation={manifests}/valid.csv",
    ]
    if n_clusters is not None:
        args.append(f"--n_clusters={n_clusters}")
    return runner.run(name, args + list(extra))


def label_free_stage(runner, data_folder, trials, name, seed=None, extra=()):
    """The whole label-free pipeline (``label_free.py`` with its yaml) as one stage."""
    args = [
        f"{FOLDER_SUP}/label_free.py",
        f"{FOLDER_SUP}/hparams/label_free.yaml",
        f"--data_folder={data_folder}",
        f"--verification_file={trials}",
    ]
    if seed is not None:
        args.append(f"--seed={seed}")
    return runner.run(name, args + list(extra))


def uses_ssps(run_folder):
    """True when a MoCo run's saved ``hyperparams.yaml`` sets an ``ssps_start_epoch`` (read as
    YAML, nothing built: the saved file writes a null as nothing before its comment)."""
    from speechbrain_moco.run_folder import resolved_yaml_tree

    _, tree = resolved_yaml_tree(os.path.join(run_folder, "hyperparams.yaml"))
    return tree.get("ssps_start_epoch") is not None


def label_free_stages(pipeline_folder):
    """``{stage: (its seconds, seconds up to and including it)}`` of a label-free pipeline's
    training stages (read from its ``stages.json``)."""
    with open(os.path.join(pipeline_folder, "stages.json"), encoding="utf-8") as f:
        records = json.load(f)["stages"]
    out, total = {}, 0.0
    for record in records:
        total += record["seconds"]
        if not record["stage"].endswith("_labels"):
            out[record["stage"]] = (record["seconds"], round(total, 1))
    return out
