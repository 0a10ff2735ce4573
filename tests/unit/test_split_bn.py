"""Shuffle-BN on one process: split batch norm and the key batch shuffled across its groups.

Defect 1 of issue 18: without DDP, ``batch_shuffle`` was the identity, so the key encoder's
batch-norm statistics came from exactly the utterances of the query batch.
"""

import copy

import pytest
import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_moco.moco.distributed import batch_shuffle, batch_unshuffle
from speechbrain_moco.moco.split_bn import split_batchnorm


def ecapa(seed=0):
    torch.manual_seed(seed)
    return ECAPA_TDNN(input_size=12, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=8)


def test_split_batchnorm_normalises_each_group_as_its_own_batch():
    torch.manual_seed(0)
    plain = torch.nn.BatchNorm1d(5)
    plain.weight.data.uniform_(0.5, 2)
    plain.bias.data.normal_()
    split = copy.deepcopy(plain)
    assert split_batchnorm(split, 3) == 1
    x = torch.randn(12, 5, 7) * 3 + 1
    out = split(x)
    groups = [copy.deepcopy(plain) for _ in range(3)]
    expected = torch.cat([bn(x[4 * k : 4 * k + 4]) for k, bn in enumerate(groups)])
    assert torch.allclose(out, expected, atol=1e-5)
    # running statistics: the mean of the groups' (what averaging G processes' would give)
    assert torch.allclose(split.running_mean, sum(g.running_mean for g in groups) / 3, atol=1e-6)
    assert torch.allclose(split.running_var, sum(g.running_var for g in groups) / 3, atol=1e-6)
    assert int(split.num_batches_tracked) == 1
    # evaluation, the state dict and so the export are those of the plain layer
    split.eval()
    plain.load_state_dict(split.state_dict())
    plain.eval()
    assert torch.equal(split(x), plain(x))
    assert list(split.state_dict()) == list(torch.nn.BatchNorm1d(5).state_dict())
    with pytest.raises(ValueError, match="bn_splits=3"):
        split.train()(torch.randn(10, 5, 7))


def test_on_one_process_a_key_is_normalised_with_another_group_than_its_query():
    """Perturb one key-input row: exactly the rows of its shuffled batch-norm group move."""
    model = ecapa()
    split_batchnorm(model, 2)
    x = torch.randn(8, 50, 12)

    def keys(inputs):
        torch.manual_seed(5)  # the same shuffle for both calls
        shuffled, _, idx = batch_shuffle(inputs, splits=2)
        return batch_unshuffle(model(shuffled).squeeze(1), idx)

    base = keys(x)
    groups = []
    for j in range(8):
        moved_input = x.clone()
        moved_input[j] += 1.0
        moved = (keys(moved_input) - base).abs().amax(dim=1) > 1e-6
        groups.append(frozenset(moved.nonzero().squeeze(1).tolist()))
    # each key shares batch-norm statistics with 4 rows (a group of 8 / 2), itself included
    assert all(len(g) == 4 and j in g for j, g in enumerate(groups))
    # the query branch normalises contiguous groups {0..3}, {4..7}: the key groups differ
    query_groups = {frozenset(range(4)), frozenset(range(4, 8))}
    assert set(groups) != query_groups
    # the key branch without the shuffle would normalise exactly the query groups
    plain = batch_unshuffle(model(x).squeeze(1), None)
    for j in range(8):
        moved_input = x.clone()
        moved_input[j] += 1.0
        moved = (model(moved_input).squeeze(1) - plain).abs().amax(dim=1) > 1e-6
        assert frozenset(moved.nonzero().squeeze(1).tolist()) in query_groups


def test_one_split_is_the_identity_shuffle():
    x = torch.randn(4, 3)
    y, lens, idx = batch_shuffle(x, torch.ones(4), splits=1)
    assert y is x and idx is None
    assert split_batchnorm(torch.nn.BatchNorm1d(3), 1) == 0
    with pytest.raises(ValueError, match="bn_splits"):
        split_batchnorm(torch.nn.BatchNorm1d(3), 0)
