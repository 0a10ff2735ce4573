"""feature_norm: global statistics are estimated, saved, required and restored."""

import pytest
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization

from speechbrain_moco.experiments import fit_global_norm
from speechbrain_moco.verification import check_norm_loaded


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
