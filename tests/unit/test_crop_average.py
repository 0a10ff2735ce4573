"""Crop-averaged embeddings: consecutive crops, remainder rule, padding ignored."""

import torch

from speechbrain_moco.verification import crop_average


def first_and_len(wavs, lens):
    """A stand-in encoder: (first sample, valid length in samples) per row."""
    n = (lens * wavs.shape[1]).round()
    return torch.stack([wavs[:, 0], n], dim=1)


def test_crops_are_consecutive_and_the_short_remainder_rule_holds():
    fn = crop_average(first_and_len, crop=4)
    wav = torch.arange(20.0).view(1, 20)
    # 10 valid samples (rest is padding): crops 0-3, 4-7 and the remainder 8-9 (>= half a crop)
    out = fn(wav, torch.tensor([0.5]))
    assert torch.allclose(out, torch.tensor([[(0 + 4 + 8) / 3, (4 + 4 + 2) / 3]]))
    # 9 valid samples: the remainder of 1 sample is dropped
    out = fn(wav, torch.tensor([9 / 20]))
    assert torch.allclose(out, torch.tensor([[2.0, 4.0]]))
    # shorter than a crop: embedded whole
    out = fn(wav, torch.tensor([3 / 20]))
    assert torch.allclose(out, torch.tensor([[0.0, 3.0]]))
