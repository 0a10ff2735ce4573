"""Batches of utterances of different lengths whose padding is inert: each embedding equals
the one of the utterance alone (to float rounding), so batching needs no equal lengths.

Zero padding leaks into a batched embedding in two places, and both are closed here:

- the features: an STFT frame near the end of an utterance could see the padding instead of
  the STFT's own end padding. With SpeechBrain's Fbank defaults (a centred STFT padded with
  zeros, a ``global`` normaliser) they are the same zeros, so the features of a zero-padded
  batch, cut to each row's own frames, are each utterance's own (checked by
  :func:`batched_features_exact`); otherwise each utterance's features are computed alone;
- the convolutions: a ``"same"``-padded SpeechBrain ``Conv1d`` pads the *batch* at its end,
  so the last frames of a shorter row see the frames after it (padding) instead of the
  reflection of its own last frames. A forward pre-hook on each such convolution rewrites,
  for every row, the ``p`` frames after its last valid frame with what the convolution's
  padding would put there for that row alone (its reflection, or zeros).

Everything else in the ECAPA-TDNN and x-vector encoders is per frame (BatchNorm in eval
mode, kernel-1 convolutions, activations) or already masked by the relative lengths (the SE
blocks' means, attentive and plain statistics pooling). Encoders with other layers (2-D
convolutions, strides) are not handled: :func:`supports` says so, and the callers fall back
to batches of equal length.

Example
-------
>>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
>>> enc = ECAPA_TDNN(20, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=8).eval()
>>> feats = [torch.randn(n, 20) for n in (30, 17, 24)]
>>> alone = torch.cat([enc(f[None], torch.ones(1)).squeeze(1) for f in feats])
>>> batched = embed_features(enc, feats)
>>> bool((batched - alone).abs().max() < 1e-5)
True
"""

import contextlib

import torch
from speechbrain.nnet.CNN import Conv1d

from speechbrain_moco.encoder import embed
from speechbrain_moco.verification.embeddings import zero_padded

SUPPORTED_PADDING = ("reflect", "constant", "zeros")


def _same_convs(encoder):
    """``[(inner torch conv, pad frames, padding mode)]`` of the encoder's "same"-padded
    SpeechBrain Conv1d layers with a kernel wider than one frame."""
    out = []
    for module in encoder.modules():
        if isinstance(module, Conv1d) and module.padding == "same" and module.kernel_size > 1:
            out.append((module.conv, module.dilation * (module.kernel_size - 1) // 2, module.padding_mode))
    return out


def supports(encoder):
    """Whether :func:`embed_features` is exact for ``encoder``: only 1-D "same"-padded
    SpeechBrain convolutions of stride 1, odd kernels and reflect or zero padding, and no
    other convolution over time."""
    same = _same_convs(encoder)
    hooked = {id(conv) for conv, _, _ in same}
    for module in encoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d)):
            return False
        if isinstance(module, torch.nn.Conv1d) and module.kernel_size[0] > 1:
            if id(module) not in hooked or module.stride[0] != 1 or module.kernel_size[0] % 2 == 0:
                return False
    return all(mode in SUPPORTED_PADDING for _, _, mode in same)


@contextlib.contextmanager
def inert_padding(encoder, frames):
    """Within the block, each "same"-padded convolution of ``encoder`` sees, after row ``i``'s
    ``frames[i]`` valid frames, what it would see for that row alone."""

    def hook_for(pad, mode):
        def hook(_module, args):
            x = args[0]  # (B, C, pad + T + pad): F.pad's fresh output, rewritten in place
            for i, n in enumerate(frames):
                n = int(n)
                if n >= x.shape[-1] - 2 * pad:
                    continue  # the longest rows: their padding is already their own
                if mode == "reflect":
                    # index pad + q holds frame q; alone, frame n + j (j < pad) reflects to
                    # frame n - 2 - j, i.e. indices pad + n - 2 down to n - 1
                    x[i, :, pad + n : 2 * pad + n] = x[i, :, n - 1 : pad + n - 1].flip(-1)
                else:
                    x[i, :, pad + n : 2 * pad + n] = 0.0
            return (x,) + tuple(args[1:])

        return hook

    convs = _same_convs(encoder)
    handles = [conv.register_forward_pre_hook(hook_for(pad, mode)) for conv, pad, mode in convs]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def embed_features(encoder, feats):
    """``(n, D)`` embeddings of a list of ``(frames, F)`` normalised feature matrices, in one
    padded batch whose padding is inert (see the module docstring)."""
    frames = [f.shape[0] for f in feats]
    batch, _ = zero_padded(feats)
    longest = batch.shape[1]
    # n - 0.25 frames, not n: SpeechBrain masks frames t < length * T (ECAPA) or rounds it
    # (x-vector pooling), and n / T * T rounds to n + 2e-5 as often as to n - 2e-5, which
    # lets the first padded frame into a row's statistics
    lengths = torch.tensor([(n - 0.25) / longest for n in frames], device=batch.device)
    with inert_padding(encoder, frames):
        return embed(encoder, batch, lengths)


def _stfts(compute_features):
    """The SpeechBrain STFT modules of a feature extractor."""
    from speechbrain.processing.features import STFT

    return [m for m in compute_features.modules() if isinstance(m, STFT)]


def batched_features_exact(compute_features, mean_var_norm):
    """Whether features computed on a zero-padded batch equal each row's own features over
    its own frames: a centred STFT whose end padding is zeros (SpeechBrain's default
    ``pad_mode="constant"``, so a row's last frames see zeros alone and in the batch), no
    deltas or context windows, and a per-frame normaliser (``global``, in eval mode). The
    Fbank's ``top_db`` floor takes each row's loudest frame, which zero padding never is."""
    stfts = _stfts(compute_features)
    return (
        len(stfts) == 1
        and stfts[0].center
        and stfts[0].pad_mode == "constant"
        and not getattr(compute_features, "deltas", True)
        and not getattr(compute_features, "context", True)
        and getattr(mean_var_norm, "norm_type", None) == "global"
        and not mean_var_norm.training
    )


@torch.no_grad()
def embed_waveforms(compute_features, mean_var_norm, encoder, wavs):
    """``(n, D)`` embeddings of a list of 1-D waveforms in one batch through the encoder with
    inert padding. The features come from one zero-padded batch, cut to each row's own
    frames, where :func:`batched_features_exact` holds; else from each waveform alone."""
    if batched_features_exact(compute_features, mean_var_norm):
        hop = _stfts(compute_features)[0].hop_length
        batch, rel = zero_padded(wavs)
        feats = mean_var_norm(compute_features(batch), rel)
        rows = [feats[i, : w.numel() // hop + 1] for i, w in enumerate(wavs)]
    else:
        rows = [mean_var_norm(compute_features(w[None]), torch.ones(1, device=w.device))[0] for w in wavs]
    return embed_features(encoder, rows)
