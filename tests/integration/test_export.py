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
from speechbrain_moco.verification import cosine_score, load_trained_encoder, read_scores


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


def test_exported_folder_has_model_and_threshold(exported):
    out, model_dir = exported
    for name in ("hyperparams.yaml", "embedding_model.ckpt", "mean_var_norm.ckpt", "threshold.json"):
        assert (model_dir / name).is_file(), name
    stats = torch.load(model_dir / "mean_var_norm.ckpt", weights_only=False)  # feature_norm: global
    assert stats["count"] > 0 and stats["glob_mean"].shape == (24,)
    info = json.loads((model_dir / "threshold.json").read_text())
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert info["threshold"] == metrics["EER_threshold"]
    assert "EER_threshold" in info["source"]
    text = (model_dir / "hyperparams.yaml").read_text()
    assert "!ref" not in text.split("audio_normalizer:")[0]  # architecture fully resolved
    assert str(out) not in text.split("\n", 2)[2]  # no path into the training folder


def test_speechbrain_loads_it_and_embeds_like_the_recipe(exported, tone_corpus, tmp_path):
    out, model_dir = exported
    model = SpeakerRecognition.from_hparams(source=str(model_dir), savedir=str(tmp_path / "sb"))
    embed_fn, _ = load_trained_encoder(str(out), "cpu")
    a = model.load_audio(os.path.join(tone_corpus, "spk5", "u0.wav"))
    b = model.load_audio(os.path.join(tone_corpus, "spk4", "u1.wav"))[:12000]
    with torch.no_grad():
        ours = embed_fn(a[None], torch.ones(1))
        theirs = model.encode_batch(a[None])
        torch.testing.assert_close(theirs.reshape(1, -1), ours, rtol=0, atol=1e-5)
        # a padded batch of two lengths
        wavs = torch.zeros(2, a.numel())
        wavs[0], wavs[1, : b.numel()] = a, b
        lens = torch.tensor([1.0, b.numel() / a.numel()])
        torch.testing.assert_close(
            model.encode_batch(wavs, lens).reshape(2, -1), embed_fn(wavs, lens), rtol=0, atol=1e-5
        )


def test_verify_files_matches_the_recipe_scores(exported, tone_corpus, capsys):
    out, model_dir = exported
    model = SpeakerRecognition.from_hparams(source=str(model_dir))  # read in place
    embed_fn, _ = load_trained_encoder(str(out), "cpu")
    enrol_ids, test_ids, recipe_scores, _ = read_scores(out / "eval" / "scores.txt")
    threshold = json.loads((model_dir / "threshold.json").read_text())["threshold"]
    for enrol, test, recipe_score in zip(enrol_ids, test_ids, recipe_scores):
        pa, pb = os.path.join(tone_corpus, enrol), os.path.join(tone_corpus, test)
        score, decision = model.verify_files(pa, pb)
        with torch.no_grad():
            ea = embed_fn(model.load_audio(pa)[None], torch.ones(1))
            eb = embed_fn(model.load_audio(pb)[None], torch.ones(1))
        assert float(score) == pytest.approx(float(cosine_score(ea, eb)), abs=1e-4)
        assert float(score) == pytest.approx(recipe_score, abs=1e-4)  # eval/scores.txt
        assert bool(decision) == (float(score) > 0.25)  # SpeechBrain's default threshold
    # the command line, on the last pair: same score, decision at the stored threshold
    cli_score, cli_threshold, same = verify.main([pa, pb, "--model", str(model_dir)])
    assert cli_score == pytest.approx(float(score), abs=1e-6)
    assert cli_threshold == threshold and same == (cli_score > threshold)
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"score {cli_score:.6f} | threshold ")
    assert printed.endswith("same speaker" if same else "different speakers")


def test_exported_folder_is_relocatable(exported, tmp_path):
    _, model_dir = exported
    moved = tmp_path / "moved"
    shutil.copytree(model_dir, moved)
    model = SpeakerRecognition.from_hparams(source=str(moved), savedir=str(tmp_path / "sb"))
    emb = model.encode_batch(torch.randn(1, 8000))
    assert emb.shape[-1] == 16 and torch.isfinite(emb).all()
