"""Loading a recipe's yaml with its command-line overrides, and a clear error for a typo.

HyperPyYAML refuses an override whose key the yaml does not have by listing every key
of the file; :func:`load_yaml` names the closest key instead.
"""

import difflib
import os
import re

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml


def _parse(text):
    """YAML 1.2 as HyperPyYAML reads it (``1e-3`` is a number)."""
    return ruamel.yaml.YAML(typ="safe", pure=True).load(text or "")


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
    given = overrides if isinstance(overrides, dict) else (_parse(overrides) or {})
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


# whole-number options whose default the yaml computes (!apply: the Folder recipes' epochs)
COMPUTED_INTEGERS = {"number_of_epochs": 1}


def yaml_defaults(path):
    """``{key: value}`` of the top-level keys whose value is a plain number or boolean
    (read as text: nothing is built)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for key, value in re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):[ \t]*([^#\n]*)", f.read(), flags=re.M):
            value = value.strip()
            if key in COMPUTED_INTEGERS and value.startswith("!apply"):
                out[key] = COMPUTED_INTEGERS[key]
                continue
            if not value or value.startswith(("!", "[", "{", "'", '"')):
                continue
            try:
                parsed = _parse(value)
            except ruamel.yaml.YAMLError:
                continue
            if isinstance(parsed, (bool, int, float)):
                out[key] = parsed
    return out


def check_override_types(path, overrides):
    """Raise ``ValueError`` naming the option when an override's value is not of its
    default's kind (a whole number, a number, True / False); ``null`` is always accepted.

    Example
    -------
    >>> path = getfixture("tmp_path") / "h.yaml"
    >>> _ = path.write_text("number_of_epochs: 40  # epochs\\nlr: 0.1\\nflag: False\\n")
    >>> check_override_types(path, "number_of_epochs: 3\\nlr: 1")
    >>> check_override_types(path, "number_of_epochs: abc")
    Traceback (most recent call last):
    ...
    ValueError: --number_of_epochs=abc: expected a whole number (h.yaml's default is 40)
    """
    given = overrides if isinstance(overrides, dict) else (_parse(overrides) or {})
    defaults = yaml_defaults(path)
    kinds = {
        bool: ("True or False", (bool,)),
        int: ("a whole number", (int,)),
        float: ("a number", (int, float)),
    }
    for key, value in given.items():
        if key not in defaults or value is None:
            continue
        default = defaults[key]
        name, accepted = kinds[type(default)]
        if not isinstance(value, accepted) or (type(default) is not bool and isinstance(value, bool)):
            shown = "computed" if key in COMPUTED_INTEGERS and default == COMPUTED_INTEGERS[key] else default
            raise ValueError(
                f"--{key}={value}: expected {name} ({os.path.basename(path)}'s default is {shown})"
            )


def load_yaml(path, overrides=None):
    """``load_hyperpyyaml`` of ``path`` with ``overrides``, after :func:`check_overrides` and
    :func:`check_override_types`."""
    check_overrides(path, overrides)
    check_override_types(path, overrides)
    with open(path, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, overrides)
