"""From a trained run to a deployed model (issue 27): ONNX with proven parity, embeddings of a
whole list equal to each file's own, a trial list scored by the exported model alone."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT, run, train_moco

from speechbrain_moco.verification import read_scores

ENV = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tone_corpus):
    """A tiny MoCo run on the tone corpus, exported with --onnx."""
    root = tmp_path_factory.mktemp("deploy")
    run_folder = root / "moco"
    train_moco(tone_corpus, run_folder, "--number_of_epochs=2")
    model = root / "model"
    run(["-m", "speechbrain_moco.export", f"--pretrain_path={run_folder}", f"--model_dir={model}", "--onnx"])
    return run_folder, model


def test_onnx_export_records_its_parity_and_documents_onnxruntime(exported):
    _, model = exported
    record = json.load(open(model / "onnx.json"))
    assert record["max_abs_difference"] <= 1e-4 and record["parity_files"]
    assert record["max_abs_difference_raw"] >= 0 and record["median_embedding_norm"] > 0
    card = (model / "README.md").read_text()
    assert "onnxruntime" in card and "embedding_model.onnx" in card


def test_a_wrong_normaliser_in_the_graph_is_refused(exported, tone_corpus, tmp_path, monkeypatch):
    import shutil

    from speechbrain_moco.verification import onnx_model

    _, model = exported
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    os.remove(broken / "embedding_model.onnx")
    real_export = torch.onnx.export

    def export_with_a_shifted_normaliser(graph, *args, **kwargs):
        norm = graph.mean_var_norm
        saved = norm.glob_mean.clone()
        norm.glob_mean += 0.5  # the file gets another normaliser than the PyTorch model
        try:
            return real_export(graph, *args, **kwargs)
        finally:
            norm.glob_mean.copy_(saved)

    monkeypatch.setattr(onnx_model.torch.onnx, "export", export_with_a_shifted_normaliser)
    files = [os.path.join(tone_corpus, "spk0", f"u{i}.wav") for i in range(3)]
    with pytest.raises(ValueError, match="not written"):
        onnx_model.export_onnx(str(broken), files)
    assert (
        not (broken / "embedding_model.onnx").exists() and not (broken / "embedding_model.onnx.tmp").exists()
    )


def test_embed_a_folder_equals_each_file_alone_and_resumes(exported, tone_corpus, tmp_path, monkeypatch):
    from speechbrain_moco import embed as embed_module
    from speechbrain_moco.verification.exported import load_exported

    _, model = exported
    corpus = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    for s in range(3):
        os.makedirs(corpus / f"s{s}")
        for u in range(7):  # several lengths, some shared: batches of one length
            n = int(16000 * (0.6 + 0.2 * (u % 3))) + (s * 37 if u == 6 else 0)
            sf.write(corpus / f"s{s}" / f"u{u}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
    (corpus / "s0" / "broken.wav").write_text("not audio")
    sf.write(corpus / "s1" / "silent.wav", np.zeros(16000, np.float32), 16000)
    # exact batching in both runtimes, and --fast (mixed lengths, inert padding) in torch
    for runtime, fast in (("torch", False), ("onnx", False), ("torch", True)):
        out = tmp_path / f"emb_{runtime}_{fast}"
        summary = embed_module.run_embed(
            str(model), str(corpus), str(out), runtime, batch_size=4, fast=fast, kaldi=True
        )
        assert summary["embedded"] == 21 and summary["skipped"] == 2
        ids = [line.split("\t")[0] for line in (out / "index.txt").read_text().splitlines()]
        emb = np.load(out / "embeddings.npy")
        single = load_exported(str(model), runtime)
        for uid, row in zip(ids, emb):
            wav, _ = sf.read(corpus / f"{uid}.wav", dtype="float32")
            alone = single(torch.from_numpy(wav)[None], torch.ones(1)).numpy()[0]
            assert np.abs(alone - row).max() <= 1e-5, uid
        skipped = (out / "skipped_audio.txt").read_text()
        assert "s0/broken" in skipped and "s1/silent" in skipped
        import kaldiio

        ark = dict(kaldiio.load_scp(str(out / "embeddings.scp")))
        assert sorted(ark) == sorted(ids) and np.allclose(ark[ids[0]], emb[0])
    # interrupted after two chunks, then run again: the same file, the two chunks reused
    monkeypatch.setattr(embed_module, "CHUNK", 5)
    embed_module.run_embed(str(model), str(corpus), str(tmp_path / "whole"), "torch", batch_size=4)
    calls = []
    real = embed_module.embed_chunk

    def dies_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(embed_module, "embed_chunk", dies_on_the_third)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        embed_module.run_embed(str(model), str(corpus), str(out), "torch", batch_size=4)
    again = []
    monkeypatch.setattr(embed_module, "embed_chunk", lambda *a, **k: again.append(1) or real(*a, **k))
    embed_module.run_embed(str(model), str(corpus), str(out), "torch", batch_size=4)
    assert len(again) == 5 - 2  # 23 files in chunks of 5: the 2 chunks done before were kept
    assert np.array_equal(np.load(out / "embeddings.npy"), np.load(tmp_path / "whole" / "embeddings.npy"))
    assert (out / "index.txt").read_text() == (tmp_path / "whole" / "index.txt").read_text()


def one_line(args):
    proc = subprocess.run(
        [sys.executable] + args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if "error:" in line][0]


def test_bad_input_gets_one_line(exported, tmp_path):
    run_folder, model = exported
    (tmp_path / "empty.txt").write_text("")
    assert "no audio file" in one_line(
        [
            "-m",
            "speechbrain_moco.embed",
            f"--model={model}",
            f"--input={tmp_path / 'empty.txt'}",
            f"--output={tmp_path / 'o'}",
        ]
    )
    bare = tmp_path / "bare"
    os.makedirs(bare)
    for name in ("hyperparams.yaml", "threshold.json", "embedding_model.ckpt", "mean_var_norm.ckpt"):
        (bare / name).write_bytes((model / name).read_bytes())
    (tmp_path / "list.txt").write_text("x.wav\n")
    assert "--runtime torch" in one_line(
        [
            "-m",
            "speechbrain_moco.embed",
            f"--model={bare}",
            f"--input={tmp_path / 'list.txt'}",
            f"--output={tmp_path / 'o2'}",
            "--runtime=onnx",
        ]
    )
    assert "no such trial list" in one_line(
        [
            "-m",
            "speechbrain_moco.verify",
            f"--model={model}",
            f"--trials={tmp_path / 'none.txt'}",
            f"--data_folder={tmp_path}",
            f"--output_folder={tmp_path / 'e'}",
        ]
    )


def test_onnx_scores_of_200_real_trials_equal_the_recipe_scores(shared_speech, tmp_path):
    """Parity on real speech: a tiny MoCo run on the shared corpus scores 200 of its trials
    (the recipe's scores.txt); the exported model scores them through onnxruntime."""
    trials = tmp_path / "trials200.txt"
    lines = open(os.path.join(shared_speech, "trials.txt")).read().splitlines()[:200]
    trials.write_text("\n".join(lines) + "\n")
    run_folder = tmp_path / "moco"
    train_moco(shared_speech, run_folder, "--number_of_epochs=1", trials=str(trials))
    model = tmp_path / "model"
    run(["-m", "speechbrain_moco.export", f"--pretrain_path={run_folder}", f"--model_dir={model}", "--onnx"])
    out = tmp_path / "onnx_eval"
    run(
        [
            "-m",
            "speechbrain_moco.verify",
            f"--model={model}",
            f"--trials={trials}",
            f"--data_folder={shared_speech}",
            f"--output_folder={out}",
            "--runtime=onnx",
        ],
        timeout=900,
    )
    recipe = read_scores(run_folder / "eval" / "scores.txt")
    ours = read_scores(out / "scores.txt")
    assert recipe[0] == ours[0] and recipe[1] == ours[1] and len(recipe[2]) == 200
    assert np.abs(recipe[2] - ours[2]).max() <= 1e-4
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["runtime"] == "onnx" and "EER_ci95" in metrics and 0 <= metrics["false_accept_rate"] <= 1
