"""What a training run folder holds, read without building the run: ``hyperparams.yaml``
with its references resolved, the latest checkpoint of ``save/``, the
``embedding_model.ckpt`` a path names, and ``run_info.json`` (where the data is, which
manifests trained it, how it was initialised: what scoring and pseudo-labelling need
to find the data again)."""

import json
import os
import re
import shlex
import sys

import ruamel.yaml
import speechbrain as sb
from hyperpyyaml import resolve_references
from speechbrain.utils.distributed import if_main_process


def resolved_yaml_tree(yaml_path):
    """``(ruamel YAML, tree)`` of a HyperPyYAML file with its ``!ref``s resolved.

    Tags (``!new:`` ...) are kept as ruamel nodes, nothing is instantiated: a
    training run's ``hyperparams.yaml`` can be inspected or copied without
    building its objects.
    """
    with open(yaml_path, encoding="utf-8") as fin:
        resolved = resolve_references(fin)
    rt_yaml = ruamel.yaml.YAML()
    return rt_yaml, rt_yaml.load(resolved)


def latest_checkpoint(run_folder):
    """The most recent checkpoint of ``<run_folder>/save`` holding an ``embedding_model``."""
    save = os.path.join(run_folder, "save")
    ckpt = sb.utils.checkpoints.Checkpointer(save).find_checkpoint() if os.path.isdir(save) else None
    if ckpt is None or "embedding_model" not in ckpt.paramfiles:
        raise FileNotFoundError(f"no checkpoint with an embedding_model in {save}")
    return ckpt


def embedding_checkpoint(init_from):
    """The ``embedding_model.ckpt`` that a path (e.g. ``--init_from``) names.

    Accepts a training ``--output_folder`` (MoCo or supervised: the latest
    checkpoint of ``save/``, the one ``verify.py`` loads), an exported model
    folder (``speechbrain_moco.export``), a ``CKPT+*`` folder, or the ``.ckpt``
    file itself.
    """
    if os.path.isfile(init_from):
        return init_from
    if not os.path.isdir(init_from):
        raise FileNotFoundError(f"--init_from={init_from}: no such file or folder")
    direct = os.path.join(init_from, "embedding_model.ckpt")
    if os.path.isfile(direct):
        return direct
    save = os.path.join(init_from, "save")
    if os.path.isdir(save):
        ckpt = sb.utils.checkpoints.Checkpointer(save).find_checkpoint()
        if ckpt is not None and os.path.isfile(os.path.join(ckpt.path, "embedding_model.ckpt")):
            return os.path.join(ckpt.path, "embedding_model.ckpt")
    raise FileNotFoundError(
        f"--init_from={init_from}: no embedding_model.ckpt in it nor in a "
        "checkpoint of its save/ folder (is it a training --output_folder?)"
    )


PATH_FIELDS = ("data_folder", "trials", "train_annotation", "valid_annotation", "init_from")


def write_run_info(run_folder, data_folder, train_annotation, valid_annotation=None, trials=None, **more):
    """Write ``<run_folder>/run_info.json`` (main process only): where a run's data is.

    The command line that made the run, ``data_folder`` (the manifests' ``$data_root``),
    the training and validation manifests and the trial list it scores, and any ``more``
    fields (JSON values). ``verify.py``, ``pseudo_labels.py`` and the export read it (with
    :func:`read_run_info`) to find the data again. A path inside the run folder is stored
    relative to it, so a run folder that is moved or copied elsewhere still finds its own
    manifests; ``run_folder`` records where it was written.
    """
    if not if_main_process():
        return
    root = os.path.abspath(run_folder)

    def stored(path):
        if not path:
            return path
        path = os.path.abspath(path)
        rel = os.path.relpath(path, root)
        return path if rel.startswith("..") else rel

    info = {
        "command": "python " + shlex.join(sys.argv),
        "run_folder": root,
        "data_folder": os.path.abspath(data_folder),
        "trials": trials and os.path.abspath(trials),
        "train_annotation": stored(train_annotation),
        "valid_annotation": stored(valid_annotation),
    }
    tmp = os.path.join(run_folder, "run_info.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(dict(info, **more), f, indent=2)
    os.replace(tmp, os.path.join(run_folder, "run_info.json"))


def read_run_info(run_folder):
    """``<run_folder>/run_info.json`` as a dict of absolute paths (an error naming the folder
    when missing). Paths are resolved against the folder the run lives in now: a relative one
    is joined to it, and an absolute one under the folder the run was written in
    (``run_folder``, or the ``--output_folder`` of its command) that no longer exists is moved
    along with the run. Whether each path exists is for the caller to check
    (:func:`require_path`)."""
    path = os.path.join(run_folder, "run_info.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is {run_folder} a training --output_folder?")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    here = os.path.abspath(run_folder)
    old = info.get("run_folder") or _output_folder_of(info.get("command", ""))
    for key in PATH_FIELDS:
        value = info.get(key)
        if not value or not isinstance(value, str):
            continue
        if not os.path.isabs(value):
            info[key] = os.path.join(here, value)
        elif old and not os.path.exists(value) and (value == old or value.startswith(old.rstrip("/") + "/")):
            info[key] = os.path.join(here, os.path.relpath(value, old))
    info["run_folder"] = here
    return info


def _output_folder_of(command):
    """The ``--output_folder=`` of a recorded command line, or None."""
    for arg in shlex.split(command):
        if arg.startswith("--output_folder="):
            return os.path.abspath(arg.split("=", 1)[1])
    return None


def require_path(info, key, how):
    """``info[key]`` when that file or folder exists, else a ``FileNotFoundError`` saying
    which input of the run is gone and ``how`` to supply it."""
    value = info.get(key)
    if value and os.path.exists(value):
        return value
    raise FileNotFoundError(
        f"{info.get('run_folder', 'the run')}/run_info.json: its {key} ({value}) is not here: {how}"
    )


def relocated_yaml_text(run_folder):
    """The run's ``hyperparams.yaml`` with the folder it was written in (its
    ``output_folder``) replaced by the folder it lives in now: building it (a checkpointer, a
    logger) then touches nothing at the old place."""
    hp_path = os.path.join(run_folder, "hyperparams.yaml")
    with open(hp_path, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"^output_folder:\s*(\S+)", text, flags=re.M)
    if match and os.path.isabs(match.group(1)):
        old, new = match.group(1).rstrip("/"), os.path.abspath(run_folder)
        if old != new:
            text = re.sub(re.escape(old) + r"(?=[/\s]|$)", lambda _: new, text)
    return text


def append_history(run_folder, row):
    """Append one JSON line (an epoch's statistics) to ``<run_folder>/history.jsonl``
    (main process only)."""
    if not if_main_process():
        return
    with open(os.path.join(run_folder, "history.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


class RunStatus:
    """``with RunStatus(run_folder):`` around a recipe's work records how it ended.

    ``<run_folder>/status.json`` says ``running`` while the block runs, then
    ``finished``, or ``failed`` with the error (a run that fails early, e.g. on a bad
    ``--data_folder``, leaves a folder that says so instead of looking like a run).
    Written by the main process only; the error is re-raised.
    """

    def __init__(self, run_folder):
        self.path = os.path.join(run_folder, "status.json")

    def _write(self, **fields):
        if if_main_process():
            with open(self.path, "w", encoding="utf-8") as f:
                json.dump(dict(fields, command="python " + shlex.join(sys.argv)), f, indent=2)

    def __enter__(self):
        self._write(status="running")
        return self

    def __exit__(self, kind, error, trace):
        if kind is None:
            self._write(status="finished")
        elif issubclass(kind, Exception):
            self._write(status="failed", error=f"{kind.__name__}: {error}")
        return False


def run_status(run_folder):
    """``running`` / ``finished`` / ``failed`` from ``status.json``, None without one."""
    path = os.path.join(run_folder, "status.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("status")
