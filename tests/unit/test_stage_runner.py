"""StageRunner: a finished stage is reused only for the same command and unchanged yaml files."""

import hashlib

import pytest

from tools.experiments import StageRunner, uses_ssps

STAGE = """import os, sys
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--output_folder=")][0]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "runs"), "a") as f:
    f.write("x")
sys.exit(3 if "--fail=1" in sys.argv else 0)
"""


def test_reuse_needs_same_command_and_same_yaml(tmp_path):
    script, cfg = tmp_path / "stage.py", tmp_path / "h.yaml"
    script.write_text(STAGE)
    cfg.write_text("lr: 0.1\n")
    runner = StageRunner(tmp_path / "work")
    done = runner.run("s", [script, cfg, "--lr=0.2"])
    digest = hashlib.sha256(b"lr: 0.1\n").hexdigest()
    assert done["hparams_sha256"] == {str(cfg.resolve()): digest}
    assert runner.run("s", [script, cfg, "--lr=0.2"]) == done  # reused, not rerun
    assert (tmp_path / "work" / "s" / "runs").read_text() == "x"
    with pytest.raises(ValueError, match="another command"):
        runner.run("s", [script, cfg, "--lr=0.5"])
    cfg.write_text("lr: 0.3\n")  # a changed default
    with pytest.raises(ValueError, match=r"h\.yaml changed since the stage ran"):
        runner.run("s", [script, cfg, "--lr=0.2"])
    cfg.write_text("lr: 0.1\n")  # back to the yaml the stage ran with: reused again
    assert runner.run("s", [script, cfg, "--lr=0.2"]) == done
    assert (tmp_path / "work" / "s" / "runs").read_text() == "x"


def test_hparams_digests_name_the_yaml_files_of_a_command():
    from tools.experiments import hparams_digests

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


def test_failed_stage_names_its_log_and_leaves_no_marker(tmp_path):
    (tmp_path / "stage.py").write_text(STAGE)
    runner = StageRunner(tmp_path / "work")
    with pytest.raises(RuntimeError, match=r"stage s failed \(exit 3\); log .*s\.log"):
        runner.run("s", [tmp_path / "stage.py", "--fail=1"])
    assert not (tmp_path / "work" / "s.done.json").exists()
    assert runner.run("s", [tmp_path / "stage.py"])["resumed"] is True  # its folder exists


@pytest.mark.parametrize(
    "line, expected",
    [
        ("ssps_start_epoch:        # null = plain MoCo (both views of one utterance); >= 2", False),
        ("ssps_start_epoch: null   # null = plain MoCo", False),
        ("ssps_start_epoch: ~", False),
        ("ssps_start_epoch:", False),
        ("ssps_start_epoch: 11     # null = plain MoCo", True),
        ("ssps_start_epoch: 2", True),
    ],
)
def test_uses_ssps_reads_the_saved_yaml(tmp_path, line, expected):
    """A null written as SpeechBrain saves it (nothing before the comment) is plain MoCo."""
    (tmp_path / "hyperparams.yaml").write_text(f"seed: 1986\n{line}\nssps_refresh_epochs: 1\n")
    assert uses_ssps(tmp_path) is expected


def test_uses_ssps_without_the_key_is_plain_moco(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text("seed: 1986\n")
    assert uses_ssps(tmp_path) is False
