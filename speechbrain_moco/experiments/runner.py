"""Run recipe command lines as stages, once each, with one reuse rule.

A stage is a recipe command (``python SCRIPT YAML --key=value ...``) with its own output
folder ``<work>/<name>/``, its log ``<work>/logs/<name>.log`` and its record
``<work>/<name>.done.json``. A finished stage is reused when nothing it depends on
changed; otherwise it runs again, from an empty folder:

- its command (paths compared as the files they name),
- the content of a yaml file it names (comments and layout do not count: a yaml whose
  comments were edited is the same yaml; a changed value is a changed stage),
- the content of the other input files it declares (a trial list ...),
- the record of an earlier stage it declares it starts from (an earlier stage that ran
  again makes every later one stale).

An interrupted stage (a record not marked finished, for the same command) resumes in its
folder: the recipes resume from their last checkpoint. A failed stage raises, naming its
log. Used by the label-free pipeline, ``compare.py`` and the benchmarks alike.

Example
-------
>>> import sys
>>> work = getfixture("tmp_path")
>>> script = work / "stage.py"
>>> _ = script.write_text("import sys, os; os.makedirs(sys.argv[-1].split('=')[1], exist_ok=True)")
>>> runner = StageRunner(work / "w", device=None)
>>> first = runner.run("a", [script])
>>> runner.run("a", [script])["reused"], runner.run("b", [script], after=["a"])["reused"]
(True, False)
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import yaml
from speechbrain.utils.logger import get_logger

from speechbrain_moco.cli import StageFailed

logger = get_logger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def file_digest(path):
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _node_text(node):
    """A canonical text of a YAML node tree: tags, keys and values, no comments."""
    if isinstance(node, yaml.ScalarNode):
        return f"{node.tag}={node.value!r}"
    if isinstance(node, yaml.SequenceNode):
        return f"{node.tag}[" + ",".join(_node_text(n) for n in node.value) + "]"
    if isinstance(node, yaml.MappingNode):
        return f"{node.tag}{{" + ",".join(f"{_node_text(k)}:{_node_text(v)}" for k, v in node.value) + "}"
    return repr(node)


def yaml_digest(path):
    """SHA-256 of a yaml file's content (tags, keys, values, order), its comments left out.

    Example
    -------
    >>> p = getfixture("tmp_path") / "h.yaml"
    >>> _ = p.write_text("lr: 0.1  # a comment\\nenc: !new:torch.nn.Linear\\n  in_features: 2\\n")
    >>> a = yaml_digest(p)
    >>> _ = p.write_text("# banner\\nlr: 0.1\\nenc: !new:torch.nn.Linear\\n    in_features: 2\\n")
    >>> a == yaml_digest(p)
    True
    >>> _ = p.write_text("lr: 0.2\\nenc: !new:torch.nn.Linear\\n  in_features: 2\\n")
    >>> a == yaml_digest(p)
    False
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # not plain YAML to this parser: its bytes decide
        return file_digest(path)
    return hashlib.sha256(_node_text(node).encode()).hexdigest()


def existing_path(value):
    """``value`` as the real path of an existing file or folder (relative to the
    repository), else None."""
    if not value:
        return None
    path = value if os.path.isabs(value) else os.path.join(ROOT, value)
    return os.path.realpath(path) if os.path.exists(path) else None


def canonical(arg):
    """A command argument with an existing path (positional or ``--key=``) spelled one way:
    relative to the repository inside it (a record stays valid in another checkout), else
    absolute.

    Example
    -------
    >>> canonical("--x=recipes/Folder/MoCo/../MoCo/hparams/moco.yaml"), canonical("--lr=0.1")
    ('--x=recipes/Folder/MoCo/hparams/moco.yaml', '--lr=0.1')
    """
    arg = str(arg)
    key, value = arg.split("=", 1) if arg.startswith("--") and "=" in arg else (None, arg)
    real = existing_path(value)
    if real is None:
        return arg
    rel = os.path.relpath(real, os.path.realpath(ROOT))
    shown = real if rel.startswith("..") else rel
    return shown if key is None else f"{key}={shown}"


def hparams_digests(cmd):
    """Content digest of each existing ``.yaml`` file a command names (positional or
    ``--key=``), keyed by its path relative to the repository (absolute outside it).

    Example
    -------
    >>> hparams_digests(["recipes/Folder/MoCo/train_moco.py", "--lr=0.1"])
    {}
    >>> list(hparams_digests(["x.py", "recipes/Folder/MoCo/hparams/moco.yaml"]))
    ['recipes/Folder/MoCo/hparams/moco.yaml']
    """
    out = {}
    for arg in map(str, cmd):
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        real = existing_path(value) if value.endswith((".yaml", ".yml")) else None
        if real and os.path.isfile(real):
            rel = os.path.relpath(real, os.path.realpath(ROOT))
            out[real if rel.startswith("..") else rel] = yaml_digest(real)
    return out


class StageRunner:
    """Run stages inside a work folder (see the module docstring).

    Arguments
    ---------
    work_folder : str
        Outputs of every stage (``<work>/<name>/``), logs and records.
    device : str or None
        ``--device=`` appended to every command (None: nothing appended).
    output_option : str
        The option that gets the stage's folder (``--output_folder``).
    """

    def __init__(self, work_folder, device="cpu", output_option="--output_folder"):
        self.work = os.path.realpath(work_folder)
        self.device = device
        self.output_option = output_option
        os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)

    def out(self, name):
        """Output folder of stage ``name`` (a name may hold ``/``: nested folders)."""
        return os.path.join(self.work, name)

    def record_path(self, name):
        """The record of stage ``name``."""
        return os.path.join(self.work, f"{name}.done.json")

    def record(self, name):
        """The finished record of stage ``name``, or None."""
        path = self.record_path(name)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        return record if record.get("finished") else None

    def _upstream(self, after):
        """Digest of each earlier stage's finished record (they must be finished)."""
        out = {}
        for name in after:
            record = self.record(name)
            if record is None:
                raise RuntimeError(f"stage {name} must finish before the stages that start from it")
            out[name] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        return out

    def run(self, name, args, after=(), inputs=()):
        """Run ``python ARGS --output_folder=<work>/<name> [--device=D]`` unless reusable.

        Arguments
        ---------
        name : str
            The stage.
        args : list
            Script and its arguments (paths relative to the repository root).
        after : sequence of str
            Earlier stages this one starts from.
        inputs : sequence of str
            Other files whose content the stage depends on (e.g. a trial list).

        Returns
        -------
        dict
            The record: ``cmd``, ``seconds``, ``reused`` (True when nothing ran),
            ``resumed`` (it continued an interrupted run), ``run_id`` (new each time it
            runs: the stages after it key on it) and the digests.
        """
        cmd = [str(a) for a in args] + [f"{self.output_option}={self.out(name)}"]
        if self.device:
            cmd.append(f"--device={self.device}")
        wanted = {
            "cmd": [canonical(a) for a in cmd],
            "hparams_sha256": hparams_digests(cmd),
            "inputs_sha256": {os.path.abspath(p): file_digest(p) for p in inputs},
            "upstream": self._upstream(after),
        }
        path = self.record_path(name)
        old = None
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        same = old is not None and all(old.get(k) == v for k, v in wanted.items())
        if same and old.get("finished") and os.path.isdir(self.out(name)):
            logger.info("stage %s already done (%.0f s)", name, old["seconds"])
            return dict(old, reused=True)
        if old is not None and not same:
            changed = sorted(k for k, v in wanted.items() if old.get(k) != v)
            logger.warning("stage %s: %s changed since it ran: running it again", name, ", ".join(changed))
            shutil.rmtree(self.out(name), ignore_errors=True)
        resumed = os.path.isdir(self.out(name))
        log_path = os.path.join(self.work, "logs", f"{name}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _write_json(path, dict(wanted, finished=False))
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        logger.info("stage %s: python %s", name, shlex.join(cmd))
        start = time.time()
        with open(log_path, "a", encoding="utf-8") as log:
            proc = subprocess.run(
                [sys.executable] + cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        seconds = round(time.time() - start, 1)
        if proc.returncode != 0:
            with open(log_path, encoding="utf-8") as f:
                tail = f.read()[-3000:]
            raise StageFailed(f"stage {name} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
        # run_id: a stage run again with the same command, inputs and (rounded) duration
        # still writes a new record, so the stages after it see that it ran again
        done = dict(wanted, finished=True, seconds=seconds, resumed=resumed, run_id=uuid.uuid4().hex)
        _write_json(path, done)
        return dict(done, reused=False)


def _write_json(path, obj):
    """Write JSON atomically (a record is never half written)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)
