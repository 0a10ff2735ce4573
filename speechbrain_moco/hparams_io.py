"""Loading a recipe's yaml with its command-line overrides, and a clear error for a typo.

HyperPyYAML refuses an override whose key the yaml does not have by listing every key
of the file; :func:`load_yaml` names the closest key instead.
"""

import difflib
import os
import re

import yaml as pyyaml
from hyperpyyaml import load_hyperpyyaml


def yaml_keys(path):
    """Top-level keys of a HyperPyYAML file, in order (read as text: nothing is built)."""
    with open(path, encoding="utf-8") as f:
        return re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", f.read(), flags=re.M)


def check_overrides(path, overrides):
    """Raise ``KeyError`` naming the closest key for an override ``path`` does not have.

    ``overrides`` is the yaml text (or dict) SpeechBrain's ``parse_arguments`` returns.

    Example
    -------
    >>> path = getfixture("tmp_path") / "h.yaml"
    >>> _ = path.write_text("number_of_epochs: 40\\nbatch_size: 32\\n")
    >>> check_overrides(path, "nuber_of_epochs: 3")
    Traceback (most recent call last):
    ...
    KeyError: '--nuber_of_epochs: h.yaml has no such key; did you mean --number_of_epochs?'
    """
    given = overrides if isinstance(overrides, dict) else (pyyaml.safe_load(overrides or "") or {})
    keys = yaml_keys(path)
    for key in given:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join('--' + k for k in close)}?"
                if close
                else (f"its keys are listed at the top of {os.path.basename(path)}")
            )
            raise KeyError(f"--{key}: {os.path.basename(path)} has no such key; {hint}")


def load_yaml(path, overrides=None):
    """``load_hyperpyyaml`` of ``path`` with ``overrides``, after :func:`check_overrides`."""
    check_overrides(path, overrides)
    with open(path, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, overrides)
