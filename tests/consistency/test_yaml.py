"""Every recipe yaml against its own script (SpeechBrain's tests/consistency/test_yaml.py).

Each hparams file is read by one script of its recipe folder (``moco*.yaml`` by
``train_moco.py``, ``verification_*.yaml`` by ``verify.py``, ``train_*.yaml`` by
``train_speaker_embeddings.py``, ...) and by the Brain that script builds. Two checks:
every key of the yaml is used (by the yaml itself, the script or its Brain), and every
key the script or its Brain reads exists in the yaml.
"""

import glob
import os
import re

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TRAINING = os.path.join(ROOT, "speechbrain_moco", "training")
BRAINS = {  # Brain class -> the library files whose code reads self.hparams
    "MoCoBrain": ["moco_brain.py", "embedding_brain.py", "scoring.py"],
    "SpeakerBrain": ["speaker_brain.py", "embedding_brain.py", "scoring.py"],
    "SSPSBrain": ["ssps_brain.py", "moco_brain.py", "embedding_brain.py", "scoring.py"],
}
SCRIPT_OF = [
    ("moco", "train_moco.py"),
    ("verification_", "verify.py"),
    ("train_", "train_speaker_embeddings.py"),
    ("pseudo_labels", "pseudo_labels.py"),
    ("label_free", "label_free.py"),
]
YAMLS = sorted(
    glob.glob(os.path.join(ROOT, "recipes", "*", "*", "hparams", "*.yaml"))
    + glob.glob(os.path.join(ROOT, "templates", "*", "*.yaml"))
)


def script_of(yaml_path):
    """The script that reads ``yaml_path`` (the template's is ``train.py``)."""
    folder = os.path.dirname(yaml_path)
    if os.path.basename(folder) != "hparams":
        return os.path.join(folder, "train.py")
    name = os.path.basename(yaml_path)
    script = next(s for prefix, s in SCRIPT_OF if name.startswith(prefix))
    return os.path.realpath(os.path.join(os.path.dirname(folder), script))


def code_reading(yaml_path):
    """``(script code, Brain code)`` of the programs that read ``yaml_path``: the Brain a
    script builds by name, or the one its yaml names (``brain_class``)."""
    with open(script_of(yaml_path), encoding="utf-8") as f:
        script = f.read()
    with open(yaml_path, encoding="utf-8") as f:
        named = re.findall(r"^brain_class: !name:[\w.]*\.(\w+)", f.read(), flags=re.M)
    brain = ""
    for cls, files in BRAINS.items():
        if re.search(rf"\b{cls}\(", script) or cls in named:
            for name in files:
                with open(os.path.join(TRAINING, name), encoding="utf-8") as f:
                    brain += f.read()
    return script, brain


def yaml_keys(text):
    return [k for k in re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", text, flags=re.M) if not k.startswith("__")]


def test_every_recipe_yaml_has_a_script():
    assert len(YAMLS) >= 10
    for path in YAMLS:
        assert os.path.isfile(script_of(path)), path


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_key_of_the_yaml_is_used(path):
    text = open(path, encoding="utf-8").read()
    script, brain = code_reading(path)
    unused = [
        key
        for key in yaml_keys(text)
        if not re.search(rf"<{key}>", text)
        and not re.search(rf"hparams\[\"{key}\"\]", script)
        and not re.search(rf"\.{key}\b", brain)
    ]
    assert not unused, f"keys of {os.path.relpath(path, ROOT)} that nothing reads: {unused}"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: os.path.relpath(p, ROOT))
def test_every_key_the_code_reads_is_in_the_yaml(path):
    keys = set(yaml_keys(open(path, encoding="utf-8").read()))
    script, brain = code_reading(path)
    read = set(re.findall(r"hparams\[\"(\w+)\"\]", script))
    read |= set(re.findall(r"(?:self\.hparams|\bhp)\.(\w+)\b", brain))
    missing = sorted(read - keys)
    assert not missing, (
        f"{os.path.relpath(script_of(path), ROOT)} (and its Brain) read keys "
        f"that {os.path.relpath(path, ROOT)} lacks: {missing}"
    )
