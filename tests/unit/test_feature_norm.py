"""feature_norm: global statistics are estimated, saved, required and restored."""

import pytest
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization

from speechbrain_moco.experiments.baselines import fit_global_norm
from speechbrain_moco.verification.embeddings import check_norm_loaded


def test_global_norm_without_statistics_is_refused():
    with pytest.raises(ValueError, match="CKPT_X: feature_norm is global but the checkpoint has no"):
        check_norm_loaded(InputNormalization(norm_type="global"), "CKPT_X")
    sentence = InputNormalization(norm_type="sentence", std_norm=False)
    assert check_norm_loaded(sentence, "CKPT_X") is sentence
    fitted = InputNormalization(norm_type="global")
    fitted(torch.randn(2, 30, 5), torch.ones(2))
    assert check_norm_loaded(fitted, "CKPT_X") is fitted


def test_fit_global_norm_estimates_the_corpus_mean_and_std():
    torch.manual_seed(0)
    feats = Fbank(n_mels=12)
    data = [{"sig": torch.randn(n) * s} for n, s in ((8000, 0.1), (12000, 1.0), (4000, 0.5))]
    norm = fit_global_norm(InputNormalization(norm_type="global"), feats, data)
    assert not norm.training and norm.count == sum(feats(d["sig"][None]).shape[1] for d in data)
    frames = torch.cat([feats(d["sig"][None])[0] for d in data])
    torch.testing.assert_close(norm.glob_mean, frames.mean(0), rtol=0, atol=1e-4)
    torch.testing.assert_close(norm.glob_std, frames.std(0, unbiased=False), rtol=0, atol=1e-3)
    # eval mode: later inputs are normalised with these statistics, not folded into them
    before = norm.glob_mean.clone()
    out = norm(frames[None] + 100, torch.ones(1))
    assert torch.equal(norm.glob_mean, before)
    torch.testing.assert_close(out[0].mean(0), 100 / norm.glob_std, rtol=1e-3, atol=1e-3)


RUN_YAML = """sample_rate: 16000
output_folder: null
data_folder: null
noise_annotation: null
rir_annotation: null
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 12
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: True
embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: 12
    tdnn_channels: [8, 8, 8, 8, 16]
    lin_neurons: 6
"""


def tiny_run(tmp_path, with_encoder=True, with_norm=True):
    """A training --output_folder: hyperparams.yaml + save/CKPT+*."""
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "hyperparams.yaml").write_text(RUN_YAML)
    hp = load_hyperpyyaml(RUN_YAML)
    norm = hp["mean_var_norm"]
    norm(torch.randn(3, 40, 12) * 2 + 7, torch.ones(3))
    recoverables = {"counter": sb.utils.epoch_loop.EpochCounter(1)}
    if with_encoder:
        recoverables["embedding_model"] = hp["embedding_model"]
    if with_norm:
        recoverables["mean_var_norm"] = norm
    sb.utils.checkpoints.Checkpointer(str(run / "save"), recoverables=recoverables).save_checkpoint()
    return run, norm, hp["embedding_model"]


def test_load_trained_encoder_restores_the_global_statistics(tmp_path):
    from speechbrain_moco.verification import load_trained_encoder

    run, norm, encoder = tiny_run(tmp_path)
    fn, train_hp = load_trained_encoder(str(run), "cpu")
    loaded = train_hp["mean_var_norm"]
    assert not loaded.training and loaded.count == norm.count
    assert torch.equal(loaded.glob_mean, norm.glob_mean) and torch.equal(loaded.glob_std, norm.glob_std)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        first = fn(wav, torch.ones(1))
        again = fn(wav * 3, torch.ones(1))  # eval mode: extraction does not move the statistics
    assert first.shape == (1, 6) and torch.equal(loaded.glob_mean, norm.glob_mean)
    assert not torch.equal(first, again)
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(train_hp["embedding_model"].state_dict()[name], tensor), name


def test_load_trained_encoder_refuses_missing_pieces(tmp_path):
    from speechbrain_moco.verification import load_trained_encoder

    run, _, _ = tiny_run(tmp_path / "a", with_norm=False)
    with pytest.raises(FileNotFoundError, match="has no mean_var_norm.ckpt"):
        load_trained_encoder(str(run), "cpu")
    run, _, _ = tiny_run(tmp_path / "b", with_encoder=False)
    with pytest.raises(FileNotFoundError, match="has no embedding_model.ckpt"):
        load_trained_encoder(str(run), "cpu")


def test_random_encoder_estimates_the_global_norm_once_and_not_for_cached_embeddings(
    tone_corpus, tmp_path, monkeypatch
):
    import os

    from speechbrain_moco.experiments import baselines as ex

    calls = []
    real = ex.fit_global_norm
    monkeypatch.setattr(ex, "fit_global_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    yaml = os.path.join(
        os.path.dirname(__file__), "..", "..", "recipes", "Folder", "MoCo", "hparams", "moco.yaml"
    )
    overrides = {"channels": 16, "emb_dim": 16, "n_mels": 24}
    trials = os.path.join(tone_corpus, "trials.txt")
    first = ex.evaluate_untrained("random", yaml, trials, tone_corpus, str(tmp_path), overrides=overrides)
    assert len(calls) == 1  # estimated once, before the first batch, not per batch
    again = ex.evaluate_untrained("random", yaml, trials, tone_corpus, str(tmp_path), overrides=overrides)
    assert len(calls) == 1 and again["EER"] == first["EER"]  # cached embeddings: no pass over the audio


def test_untrained_evaluation_reads_each_trial_file_header_once(tone_corpus, tmp_path, monkeypatch):
    import os

    from speechbrain_moco.dataio import trials as trial_io
    from speechbrain_moco.experiments import baselines as ex

    probed = []
    real = trial_io.audio_frames
    monkeypatch.setattr(trial_io, "audio_frames", lambda p: probed.append(p) or real(p))
    yaml = os.path.join(
        os.path.dirname(__file__), "..", "..", "recipes", "Folder", "MoCo", "hparams", "moco.yaml"
    )
    trials = os.path.join(tone_corpus, "trials.txt")
    ex.evaluate_untrained("mfcc_stats", yaml, trials, tone_corpus, str(tmp_path))
    assert probed and len(probed) == len(set(probed))  # one manifest, written once
    rows = open(os.path.join(tmp_path, "trial_utts.csv")).read().splitlines()
    assert len(rows) == len(probed) + 1
