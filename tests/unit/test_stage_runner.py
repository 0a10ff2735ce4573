"""StageRunner: one reuse rule. A stage is reused while its command, the values of its yaml
files, its declared inputs and the stages it starts from are unchanged; otherwise it runs
again from an empty folder. An interrupted stage resumes; a failed one names its log."""

import json
import shutil

import pytest

from speechbrain_moco.experiments.runner import StageRunner, hparams_digests, yaml_digest

STAGE = """import os, sys
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--output_folder=")][0]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "runs"), "a") as f:
    f.write("x")
sys.exit(3 if "--fail=1" in sys.argv else 0)
"""


def runs(work, name):
    return (work / name / "runs").read_text()


def test_reuse_needs_same_command_and_same_yaml_values(tmp_path):
    script, cfg = tmp_path / "stage.py", tmp_path / "h.yaml"
    script.write_text(STAGE)
    cfg.write_text("lr: 0.1  # a comment\n")
    work = tmp_path / "work"
    runner = StageRunner(work)
    done = runner.run("s", [script, cfg, "--lr=0.2"])
    assert done["hparams_sha256"] == {str(cfg.resolve()): yaml_digest(cfg)} and not done["reused"]
    assert runner.run("s", [script, cfg, "--lr=0.2"])["reused"]
    assert runs(work, "s") == "x"
    cfg.write_text("# a banner\nlr: 0.1    # another comment\n")  # comments only: the same yaml
    assert runner.run("s", [script, cfg, "--lr=0.2"])["reused"]
    cfg.write_text("lr: 0.3\n")  # a changed value: run again, from an empty folder
    assert not runner.run("s", [script, cfg, "--lr=0.2"])["reused"]
    assert runs(work, "s") == "x"
    assert not runner.run("s", [script, cfg, "--lr=0.5"])["reused"]  # another command
    assert runs(work, "s") == "x"
    assert runner.run("s", [script, cfg, "--lr=0.5"])["reused"]


def test_a_stage_reruns_after_an_earlier_stage_or_an_input_changed(tmp_path):
    script, trials = tmp_path / "stage.py", tmp_path / "trials.txt"
    script.write_text(STAGE)
    trials.write_text("1 a b\n")
    work = tmp_path / "work"
    runner = StageRunner(work)
    runner.run("train", [script])
    runner.run("score", [script, "--x=1"], after=["train"], inputs=[trials])
    assert runner.run("score", [script, "--x=1"], after=["train"], inputs=[trials])["reused"]
    trials.write_text("0 a b\n")
    assert not runner.run("score", [script, "--x=1"], after=["train"], inputs=[trials])["reused"]
    runner.run("train", [script, "--epochs=2"])  # the earlier stage ran again
    assert not runner.run("score", [script, "--x=1"], after=["train"], inputs=[trials])["reused"]
    assert runner.run("score", [script, "--x=1"], after=["train"], inputs=[trials])["reused"]
    with pytest.raises(RuntimeError, match="must finish before"):
        runner.run("later", [script], after=["never_ran"])


def test_hparams_digests_name_the_yaml_files_of_a_command():
    assert hparams_digests(["recipes/Folder/MoCo/train_moco.py", "--lr=0.1"]) == {}
    digests = hparams_digests(
        [
            "x.py",
            "recipes/Folder/MoCo/hparams/moco.yaml",
            "--other=recipes/Folder/MoCo/hparams/verification_cosine.yaml",
        ]
    )
    assert sorted(digests) == [
        "recipes/Folder/MoCo/hparams/moco.yaml",
        "recipes/Folder/MoCo/hparams/verification_cosine.yaml",
    ]
    assert all(len(v) == 64 for v in digests.values())


def test_failed_stage_names_its_log_and_resumes_in_its_folder(tmp_path):
    (tmp_path / "stage.py").write_text(STAGE)
    work = tmp_path / "work"
    runner = StageRunner(work)
    with pytest.raises(RuntimeError, match=r"stage s failed \(exit 3\); log .*s\.log"):
        runner.run("s", [tmp_path / "stage.py", "--fail=1"])
    assert json.loads((work / "s.done.json").read_text())["finished"] is False
    with pytest.raises(RuntimeError):  # the same command, still unfinished: resumed in its folder
        runner.run("s", [tmp_path / "stage.py", "--fail=1"])
    assert runs(work, "s") == "xx"
    done = runner.run("s", [tmp_path / "stage.py"])  # another command: from an empty folder
    assert done["resumed"] is False and runs(work, "s") == "x"


def test_nested_stage_names_and_no_device(tmp_path):
    (tmp_path / "stage.py").write_text(STAGE + "assert not any(a.startswith('--device') for a in sys.argv)\n")
    runner = StageRunner(tmp_path / "work", device=None)
    runner.run("f0/s1/moco", [tmp_path / "stage.py"])
    assert (tmp_path / "work" / "f0" / "s1" / "moco.done.json").is_file()
    assert (tmp_path / "work" / "logs" / "f0" / "s1" / "moco.log").is_file()


def test_an_earlier_stage_redone_with_the_same_command_makes_the_later_ones_stale(tmp_path):
    """The label-free CI flake: an earlier stage deleted and run again with the same command
    and the same duration (seconds are rounded to 0.1 s) wrote the same record, so the later
    stage was reused on the old stage's outputs. Each run now has its own id."""
    script = tmp_path / "stage.py"
    script.write_text(STAGE)
    work = tmp_path / "work"
    runner = StageRunner(work)
    first = runner.run("labels", [script])
    runner.run("train", [script], after=["labels"])
    assert runner.run("train", [script], after=["labels"])["reused"]
    (work / "labels.done.json").unlink()
    shutil.rmtree(work / "labels")
    again = runner.run("labels", [script])
    assert not again["reused"] and again["run_id"] != first["run_id"]
    assert not runner.run("train", [script], after=["labels"])["reused"]
    assert runs(work, "train") == "x"
    assert runner.run("train", [script], after=["labels"])["reused"]
