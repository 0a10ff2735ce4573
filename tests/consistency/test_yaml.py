"""Every key of every recipe yaml is used (by the yaml itself or by the code)."""

import glob
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
YAMLS = sorted(glob.glob(os.path.join(ROOT, "recipes", "*", "*", "hparams", "*.yaml"))
               + glob.glob(os.path.join(ROOT, "templates", "*", "*.yaml")))
CODE = "\n".join(open(p, encoding="utf-8").read() for p in
                 glob.glob(os.path.join(ROOT, "speechbrain_moco", "*.py"))
                 + glob.glob(os.path.join(ROOT, "recipes", "*", "*", "*.py"))
                 + glob.glob(os.path.join(ROOT, "templates", "*", "*.py")))


def test_there_are_yamls():
    assert len(YAMLS) >= 5


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_top_level_key_is_used(path):
    text = open(path, encoding="utf-8").read()
    keys = re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", text, flags=re.M)
    unused = []
    for key in keys:
        if key.startswith("__"):
            continue
        in_yaml = re.search(rf"<{key}>", text)
        in_code = re.search(rf"[\"']{key}[\"']|\.{key}\b", CODE)
        if not (in_yaml or in_code):
            unused.append(key)
    assert not unused, f"unused keys in {path}: {unused}"
