"""Export round trip: a tiny training run -> SpeechBrain ``SpeakerRecognition``.

The exported folder must load with SpeechBrain's own ``from_hparams`` (no hub
access), give the query encoder's embeddings, and score a trial as the
recipe's cosine scoring did.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, TINY
from speechbrain.inference.speaker import SpeakerRecognition

from speechbrain_moco import verify
from speechbrain_moco.verification import load_trained_encoder, read_scores


@pytest.fixture(scope="module")
def exported(tone_corpus, tmp_path_factory):
    """A tiny training run (with its trial evaluation) and its exported folder."""
    base = tmp_path_factory.mktemp("export")
    out, model_dir = base / "out", base / "model"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(
        [
            sys.executable,
            "recipes/Folder/MoCo/train_moco.py",
            "recipes/Folder/MoCo/hparams/moco.yaml",
            f"--data_folder={tone_corpus}",
            "--verification_file=trials.txt",
            f"--output_folder={out}",
        ]
        + TINY,
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechbrain_moco.export",
            f"--pretrain_path={out}",
            f"--model_dir={model_dir}",
        ],
        cwd=str(base),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model written to" in proc.stdout
    return out, model_dir


def load_interface(model_dir):
    """The model as the README loads it: SpeechBrain's foreign_class and the folder's interface.py."""
    from speechbrain.inference.interfaces import foreign_class

    return foreign_class(
        source=str(model_dir),
        pymodule_file="interface.py",
        classname="MoCoSpeakerRecognition",
        savedir=str(model_dir),
    )


def test_exported_folder_has_model_threshold_card_and_interface(exported):
    out, model_dir = exported
    for name in (
        "hyperparams.yaml",
        "embedding_model.ckpt",
        "mean_var_norm.ckpt",
        "mean_var_norm_emb.ckpt",
        "threshold.json",
        "interface.py",
        "README.md",
    ):
        assert (model_dir / name).is_file(), name
    stats = torch.load(model_dir / "mean_var_norm.ckpt", weights_only=False)  # feature_norm: global
    assert stats["count"] > 0 and stats["glob_mean"].shape == (24,)
    info = json.loads((model_dir / "threshold.json").read_text())
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    _, _, scores, labels = read_scores(out / "eval" / "scores.txt")
    above = min(s for s in scores if s > metrics["EER_threshold"] + 1e-7)
    assert info["threshold"] == pytest.approx((metrics["EER_threshold"] + above) / 2)  # between two trials
    assert info["operating_point"] == "eer"
    assert info["measured_on"]["scores"] == str(out / "eval" / "scores.txt")
    text = (model_dir / "hyperparams.yaml").read_text()
    assert f"threshold: {info['threshold']!r}" in text and "mean_var_norm_emb:" in text
    assert "!ref" not in text.split("threshold:")[0]  # architecture fully resolved
    assert str(out) not in text  # no path into the training folder
    card = (model_dir / "README.md").read_text()
    assert "train_moco.py" in card and f"{info['threshold']:.4f}" in card and "foreign_class" in card
    assert f"EER {metrics['EER']:.2f} %" in card


def test_interface_decides_at_the_exported_threshold(exported, tone_corpus):
    """foreign_class(interface.py): scores equal the recipe's, decisions at the exported
    threshold (SpeechBrain's SpeakerRecognition decides at 0.25), the same error rates."""
    from speechbrain_moco.verification import error_rates

    out, model_dir = exported
    model, plain = load_interface(model_dir), SpeakerRecognition.from_hparams(source=str(model_dir))
    enrol_ids, test_ids, recipe_scores, labels = read_scores(out / "eval" / "scores.txt")
    threshold = json.loads((model_dir / "threshold.json").read_text())["threshold"]
    assert model.threshold == threshold
    scores, decisions = [], []
    for enrol, test in zip(enrol_ids, test_ids):
        pa, pb = os.path.join(tone_corpus, enrol), os.path.join(tone_corpus, test)
        score, same = model.verify_files(pa, pb)
        plain_score, plain_same = plain.verify_files(pa, pb)
        assert float(plain_score) == pytest.approx(float(score), abs=1e-6)
        assert bool(plain_same) == (float(plain_score) > 0.25)
        scores.append(float(score))
        decisions.append(bool(same))
    assert scores == pytest.approx(list(recipe_scores), abs=1e-4)
    assert decisions == [s > threshold for s in scores]
    accept = torch.tensor(decisions)
    ours = (
        float(accept[torch.tensor(labels) == 0].float().mean()),
        float((~accept[torch.tensor(labels) == 1]).float().mean()),
    )
    assert ours == pytest.approx(error_rates(recipe_scores, labels, threshold))
    assert model.llr(1.0) > model.llr(0.0) or model.hparams.calibration["scale"] <= 0


def test_encode_batch_normalize_subtracts_the_training_mean(exported, tone_corpus):
    out, model_dir = exported
    model = load_interface(model_dir)
    plain = SpeakerRecognition.from_hparams(source=str(model_dir))
    wav = model.load_audio(os.path.join(tone_corpus, "spk5", "u0.wav"))[None]
    mean = torch.load(model_dir / "mean_var_norm_emb.ckpt", weights_only=False)["glob_mean"]
    with torch.no_grad():
        raw = model.encode_batch(wav)
        torch.testing.assert_close(model.encode_batch(wav, normalize=True), raw - mean)
        torch.testing.assert_close(plain.encode_batch(wav, normalize=True), raw - mean)  # SpeechBrain's own
    assert mean.shape == (16,)


def test_speechbrain_loads_it_and_embeds_like_the_recipe(exported, tone_corpus, tmp_path):
    out, model_dir = exported
    model = SpeakerRecognition.from_hparams(source=str(model_dir), savedir=str(tmp_path / "sb"))
    embed_fn, _ = load_trained_encoder(str(out), "cpu")
    a = model.load_audio(os.path.join(tone_corpus, "spk5", "u0.wav"))
    with torch.no_grad():
        ours = embed_fn(a[None], torch.ones(1))
        theirs = model.encode_batch(a[None])
        torch.testing.assert_close(theirs.reshape(1, -1), ours, rtol=0, atol=1e-5)


def test_command_line_pair_verification(exported, tone_corpus, capsys):
    _, model_dir = exported
    threshold = json.loads((model_dir / "threshold.json").read_text())["threshold"]
    pa, pb = os.path.join(tone_corpus, "spk5", "u0.wav"), os.path.join(tone_corpus, "spk4", "u1.wav")
    score, cli_threshold, same = verify.main([pa, pb, "--model", str(model_dir)])
    assert cli_threshold == threshold and same == (score > threshold)
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"score {score:.6f} | llr ")
    assert printed.endswith("same speaker" if same else "different speakers")
    assert verify.main([pa, pb, "--model", str(model_dir), "--threshold=-1"])[2] is True
    with pytest.raises(SystemExit) as err:  # a missing file: one line, no traceback
        verify.main([pa, str(tone_corpus) + "/spk5/nope.wav", "--model", str(model_dir)])
    assert err.value.code == 2 and "audio file not found" in capsys.readouterr().err


def test_operating_points_and_label_free_calibration(exported, tmp_path):
    from speechbrain_moco.verification.export import export_model

    out, _ = exported
    far = export_model(str(out), str(tmp_path / "far"), operating_point="far=0.0")
    _, _, scores, labels = read_scores(out / "eval" / "scores.txt")
    assert far["measured_on"]["false_accept_rate"] == 0.0
    assert far["threshold"] > max(s for s, y in zip(scores, labels) if y == 0)
    given = export_model(str(out), str(tmp_path / "t"), threshold=0.3)
    assert given["threshold"] == 0.3 and given["measured_on"]["operating_point_given"] == "command line"
    free = export_model(str(out), str(tmp_path / "free"), scores=str(tmp_path / "none.txt"))
    assert free["measured_on"]["scores"] is None and free["measured_on"]["n_pairs"] > 0
    cal = free["calibration"]
    assert free["threshold"] == pytest.approx(-cal["offset"] / cal["scale"])  # llr = 0 at EER
    with pytest.raises(ValueError, match="unknown operating point"):
        export_model(str(out), str(tmp_path / "bad"), operating_point="median")


def test_exported_folder_is_relocatable(exported, tmp_path):
    _, model_dir = exported
    moved = tmp_path / "moved"
    shutil.copytree(model_dir, moved)
    model = load_interface(moved)
    emb = model.encode_batch(torch.randn(1, 8000))
    assert emb.shape[-1] == 16 and torch.isfinite(emb).all()
