"""Batches of mixed lengths whose padding is inert: each embedding equals its own."""

import pytest
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.lobes.models.ResNet import ResNet
from speechbrain.lobes.models.Xvector import Xvector
from speechbrain.processing.features import InputNormalization

from speechbrain_moco.encoder import embed
from speechbrain_moco.verification import inert_padding

LENGTHS = (41, 23, 37, 23, 30)  # frames: the longest first, one length twice


def encoders():
    torch.manual_seed(0)
    ecapa = ECAPA_TDNN(20, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=8)
    xvector = Xvector(in_channels=20, tdnn_channels=[16] * 5, lin_neurons=8)
    return {"ecapa": ecapa.eval(), "xvector": xvector.eval()}


def alone(encoder, feats):
    with torch.no_grad():
        return torch.cat([embed(encoder, f[None], torch.ones(1)) for f in feats])


@pytest.mark.parametrize("name", ["ecapa", "xvector"])
def test_batched_embeddings_equal_each_alone_and_plain_padding_does_not(name, monkeypatch):
    from speechbrain.nnet.pooling import StatisticsPooling

    # SpeechBrain's x-vector pooling adds random noise of 1e-5..9e-5 to its means on every
    # call, in eval mode too: off here, so that only padding can make a difference
    no_noise = lambda self, shape, device="cpu": torch.zeros(shape)  # noqa: E731
    monkeypatch.setattr(StatisticsPooling, "_get_gauss_noise", no_noise)
    encoder = encoders()[name]
    assert inert_padding.supports(encoder)
    torch.manual_seed(1)
    feats = [torch.randn(n, 20) for n in LENGTHS]
    ref = alone(encoder, feats)
    batched = inert_padding.embed_features(encoder, feats)
    assert batched.shape == ref.shape and (batched - ref).abs().max() < 1e-5
    # the same batch without the hooks: the padding leaks (the check above can fail)
    batch = torch.zeros(len(feats), max(LENGTHS), 20)
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = f
    with torch.no_grad():
        plain = embed(encoder, batch, torch.tensor([(n - 0.25) / max(LENGTHS) for n in LENGTHS]))
    leak, inert = float((plain - ref)[1:].abs().max()), float((batched - ref).abs().max())
    # every row but the longest (a random x-vector is less sensitive to its edges than ECAPA)
    assert leak > (1e-3 if name == "ecapa" else 10 * max(inert, 1e-7))
    assert (plain - ref)[0].abs().max() < 1e-5


def test_relative_lengths_n_over_t_let_a_padded_frame_in():
    """Why the lengths are (n - 0.25) / T: with n / T, length * T rounds above n for some
    n and T, and ECAPA's masks then count the first padded frame."""
    above = [(n, t) for t in range(50, 400) for n in range(10, t) if (torch.tensor(n / t) * t).item() > n]
    assert above  # such pairs exist in float32
    assert all((torch.tensor((n - 0.25) / t) * t).item() < n for n, t in above[:200])


def test_waveforms_batched_features_equal_each_alone():
    encoder = encoders()["ecapa"]
    fbank = Fbank(n_mels=20).eval()
    norm = InputNormalization(norm_type="global")
    torch.manual_seed(2)
    norm(torch.randn(4, 50, 20), torch.ones(4))  # fit global statistics, then eval
    norm.eval()
    assert inert_padding.batched_features_exact(fbank, norm)
    wavs = [0.1 * torch.randn(n) for n in (9000, 5123, 7777, 5123, 4000)]
    with torch.no_grad():
        ref = torch.cat([embed(encoder, norm(fbank(w[None]), torch.ones(1)), torch.ones(1)) for w in wavs])
    out = inert_padding.embed_waveforms(fbank, norm, encoder, wavs)
    assert (out - ref).abs().max() < 1e-5
    # a per-utterance normaliser: features are then computed for each file alone, still exact
    sentence = InputNormalization(norm_type="sentence").eval()
    assert not inert_padding.batched_features_exact(fbank, sentence)
    with torch.no_grad():
        ref = torch.cat(
            [embed(encoder, sentence(fbank(w[None]), torch.ones(1)), torch.ones(1)) for w in wavs]
        )
    assert (inert_padding.embed_waveforms(fbank, sentence, encoder, wavs) - ref).abs().max() < 1e-5


def test_a_2d_convolution_encoder_is_not_supported():
    resnet = ResNet(input_size=20, channels=[4, 4, 4, 4], block_sizes=[1, 1, 1, 1], lin_neurons=8)
    assert not inert_padding.supports(resnet)
