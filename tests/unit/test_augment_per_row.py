"""Every transform of the two-view pipeline draws its randomness per row (issue 18, defect 2).

SpeechBrain's ``DropFreq`` picks its notches once per call: two views of an utterance that
both went through it shared them, a shortcut no queue negative has. Identical rows through
the recipes' own ``augment`` object, each transform forced on in turn, must come out
pairwise different.
"""

import os

import pytest
import torch
from conftest import ROOT
from hyperpyyaml import load_hyperpyyaml

YAMLS = [
    "recipes/Folder/MoCo/hparams/moco.yaml",
    "recipes/Folder/MoCo/hparams/moco_xvector.yaml",
    "recipes/VoxCeleb/MoCo/hparams/moco.yaml",
]


def recipe_augment(yaml, tmp_path):
    with open(os.path.join(ROOT, yaml), encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out")})
    return hp["augment"]


@pytest.mark.parametrize("yaml", YAMLS)
def test_identical_rows_come_out_pairwise_different_from_every_transform(yaml, tmp_path):
    augment = recipe_augment(yaml, tmp_path)
    torch.manual_seed(0)
    speechlike = torch.randn(1, 16000) * torch.linspace(0.2, 1.0, 16000)
    rows = speechlike.repeat(4, 1)
    names = [type(a.transform).__name__ for a in augment.augmentations]
    assert "DropFreq" not in names  # SpeechBrain's, drawn once per call
    for k, chosen in enumerate(augment.augmentations):
        probs = [a.prob for a in augment.augmentations]
        for a in augment.augmentations:
            a.prob = 1.0 if a is chosen else 0.0
        torch.manual_seed(3)
        out = augment(rows, torch.ones(4))
        for a, p in zip(augment.augmentations, probs):
            a.prob = p
        assert not torch.equal(out[0], rows[0]), names[k]  # the transform ran
        for i in range(4):
            for j in range(i + 1, 4):
                assert (out[i] - out[j]).abs().max() > 1e-4, (names[k], i, j)


def test_speechbrain_dropfreq_shares_its_notches_across_rows():
    """Why the recipes use DropFreqRows: SpeechBrain's DropFreq gives identical rows one output."""
    from speechbrain.augment.time_domain import DropFreq

    from speechbrain_moco.dataio.spectral import DropFreqRows

    rows = torch.randn(1, 8000).repeat(3, 1)
    torch.manual_seed(0)
    shared = DropFreq(drop_freq_count_low=1, drop_freq_count_high=3)(rows)
    assert torch.allclose(shared[0], shared[1]) and torch.allclose(shared[1], shared[2])
    torch.manual_seed(0)
    own = DropFreqRows(drop_freq_count_low=1, drop_freq_count_high=3)(rows)
    assert (own[0] - own[1]).abs().max() > 1e-3


def test_dropfreq_rows_is_speechbrains_filter_drawn_per_row():
    """With one frequency to draw from, every row gets exactly SpeechBrain's DropFreq output
    (the same notch filters, as strong an augmentation); the notch removes a tone in its
    stopband and leaves a far one."""
    from speechbrain.augment.time_domain import DropFreq

    from speechbrain_moco.dataio.spectral import DropFreqRows

    fixed = dict(drop_freq_low=0.3, drop_freq_high=0.3, drop_freq_count_low=1, drop_freq_count_high=1)
    torch.manual_seed(0)
    rows = torch.randn(3, 8000)
    # equal up to float32 rounding: a grouped convolution and DropFreq's may take other
    # vector code paths on other CPUs (1.8e-6 seen on one, 0 on another)
    assert torch.allclose(DropFreqRows(**fixed)(rows), DropFreq(**fixed)(rows), atol=1e-5, rtol=0)
    t = torch.arange(16000) / 16000
    near, far = torch.sin(2 * torch.pi * 2680 * t), torch.sin(2 * torch.pi * 500 * t)  # notch ~0.335
    out = DropFreqRows(**fixed)((near + far)[None])[0]
    assert torch.allclose(out[200:-200], far[200:-200], atol=0.05)
