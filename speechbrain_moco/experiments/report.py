"""What experiment scripts write: the machine, JSON and markdown results, the options every
benchmark shares, a speaker split in one line."""

import argparse
import json
import os
import platform
import shlex

import numpy as np

from speechbrain_moco.experiments.runner import ROOT


def machine_description():
    """One line naming the machine the numbers come from (no path of it)."""
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


def shown_path(path):
    """A path as results files write it: relative to the repository, or ``../shared/...``
    style relative to it, never the machine's absolute path.

    Example
    -------
    >>> shown_path(os.path.join(ROOT, "recipes", "x"))
    'recipes/x'
    """
    return os.path.relpath(os.path.realpath(path), os.path.realpath(ROOT))


def shown_command(prefix, argv):
    """``prefix`` and ``argv`` as a results file writes the command: every absolute path in an
    argument (``/x`` or ``--key=/x``) written by :func:`shown_path`.

    Example
    -------
    >>> shown_command("python b.py", ["--out=" + os.path.join(ROOT, "r"), "--n", "3"])
    'python b.py --out=r --n 3'
    """
    shown = []
    for arg in argv:
        key, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if os.path.isabs(value):
            value = shown_path(value)
        shown.append(shlex.quote(key + sep + value))
    return " ".join([prefix] + shown)


def write_json(path, obj):
    """Write ``obj`` as indented JSON (numpy scalars and arrays converted), atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(type(o).__name__)

    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, default=default)
    os.replace(tmp, path)


def benchmark_parser(doc, work_name):
    """The options every benchmark shares: ``--data_folder`` (default the shared
    speechocean762_dev), ``--work_folder`` (``results/benchmarks/<work_name>``), ``--device``."""
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


def split_summary(split):
    """One line: speakers of each half, split seed and fold, trials per list."""
    return (
        f"{len(split['train_speakers'])} train / {len(split['test_speakers'])} test speakers "
        f"(split seed {split['seed']}, fold {split.get('fold', 0)}); trials per list: "
        + ", ".join(
            f"{k}: {v['target']} target + {v['nontarget']} non-target" for k, v in split["trials"].items()
        )
    )


def relative_change(new, ref):
    """Relative change of ``new`` against ``ref`` in percent (negative = lower).

    Example
    -------
    >>> relative_change(4.0, 5.0)
    -20.0
    """
    return float(100.0 * (new - ref) / ref) if ref else float("nan")
