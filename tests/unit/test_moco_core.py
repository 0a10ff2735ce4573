"""Unit tests of the MoCo core: queue, momentum, InfoNCE, heads, helpers."""

import math

import pytest
import torch
import torch.nn.functional as F

from speechbrain_moco.encoder import check_embedding, embed
from speechbrain_moco.moco.distributed import all_gather_nograd, batch_shuffle, batch_unshuffle
from speechbrain_moco.moco.heads import ProjectionHead
from speechbrain_moco.moco.infonce import infonce_logits, infonce_loss, topk_accuracy
from speechbrain_moco.moco.momentum import ema_update, make_key_twin, momentum_at
from speechbrain_moco.moco.queue import KeyQueue
from speechbrain_moco.training import warmup_cosine


def rows(*values, dim=3):
    return torch.tensor([[float(v)] * dim for v in values])


def test_queue_fills_in_order_and_wraps():
    q = KeyQueue(size=5, dim=3)
    q.enqueue(rows(1, 2, 3))
    assert int(q.ptr) == 3 and int(q.filled) == 3
    assert q.keys[:3, 0].tolist() == [1, 2, 3]
    q.enqueue(rows(4, 5, 6, 7))  # writes 3, 4, then wraps to 0, 1
    assert int(q.ptr) == 2 and int(q.filled) == 5
    assert q.keys[:, 0].tolist() == [6, 7, 3, 4, 5]


def test_queue_batch_larger_than_queue_keeps_last_keys_in_place():
    q = KeyQueue(size=3, dim=3)
    q.enqueue(rows(1))
    q.enqueue(rows(2, 3, 4, 5, 6))  # sequential writes: 1 ends at 0, then 2..6 at 1,2,0,1,2
    assert int(q.ptr) == 0
    assert q.keys[:, 0].tolist() == [4, 5, 6]
    ref = KeyQueue(size=3, dim=3)
    for v in (1, 2, 3, 4, 5, 6):
        ref.enqueue(rows(v))
    assert torch.equal(ref.keys, q.keys) and int(ref.ptr) == int(q.ptr)


def test_queue_casts_to_float32_and_checks_shape():
    q = KeyQueue(size=4, dim=2)
    q.enqueue(torch.ones(2, 2, dtype=torch.bfloat16))
    assert q.keys.dtype == torch.float32 and torch.equal(q.keys[:2], torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        q.enqueue(torch.ones(2, 3))


def test_queue_state_dict_round_trip():
    q = KeyQueue(size=4, dim=2)
    q.enqueue(torch.randn(3, 2))
    r = KeyQueue(size=4, dim=2)
    r.load_state_dict(q.state_dict())
    assert torch.equal(r.keys, q.keys) and int(r.ptr) == 3 and int(r.filled) == 3


def _pair():
    torch.manual_seed(0)
    query = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    key = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    query(torch.randn(8, 4))  # move running stats away from init
    return query, key


def test_ema_m0_copies_and_m1_freezes():
    query, key = _pair()
    before = {k: v.clone() for k, v in key.state_dict().items()}
    ema_update(key, query, 1.0)
    for name, value in key.state_dict().items():
        assert torch.equal(value, before[name]) or name.endswith("num_batches_tracked")
    ema_update(key, query, 0.0)
    for name, value in key.state_dict().items():
        assert torch.equal(value, query.state_dict()[name])


def test_ema_general_m_matches_formula():
    query, key = _pair()
    k0 = {n: v.clone() for n, v in key.state_dict().items()}
    ema_update(key, query, 0.9)
    for name, value in key.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(value, query.state_dict()[name])
            continue
        expected = 0.9 * k0[name] + 0.1 * query.state_dict()[name]
        assert torch.allclose(value, expected, atol=1e-7)


def test_ema_refuses_different_structures():
    with pytest.raises(ValueError, match="differ"):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.5)


def test_make_key_twin_copies_and_freezes():
    query, key = _pair()
    make_key_twin(query, key)
    assert all(not p.requires_grad for p in key.parameters())
    for name, value in key.state_dict().items():
        assert torch.equal(value, query.state_dict()[name])
    with pytest.raises(ValueError, match="does not match"):
        make_key_twin(torch.nn.Linear(2, 3), torch.nn.Linear(2, 2))


def test_momentum_schedule_is_a_function_of_the_step():
    assert momentum_at(0, 0.99) == momentum_at(10**6, 0.99) == 0.99
    assert momentum_at(0, 0.99, 1.0, 200) == pytest.approx(0.99)
    assert momentum_at(100, 0.99, 1.0, 200) == pytest.approx(0.995)
    assert momentum_at(500, 0.99, 1.0, 200) == pytest.approx(1.0)
    values = [momentum_at(s, 0.99, 1.0, 200) for s in range(0, 201, 10)]
    assert values == sorted(values)
    with pytest.raises(ValueError):
        momentum_at(0, 1.5)


def test_infonce_positive_in_column_zero_and_loss_matches_manual():
    torch.manual_seed(1)
    q = F.normalize(torch.randn(4, 8), dim=1)
    k = F.normalize(torch.randn(4, 8), dim=1)
    neg = F.normalize(torch.randn(6, 8), dim=1)
    logits, labels = infonce_logits(q, k, neg, temperature=0.5)
    assert logits.shape == (4, 7) and labels.tolist() == [0, 0, 0, 0]
    assert torch.allclose(logits[:, 0], (q * k).sum(1) / 0.5)
    assert torch.allclose(logits[:, 1:], q @ neg.t() / 0.5)
    manual = -torch.log(torch.exp(logits[:, 0]) / torch.exp(logits).sum(1)).mean()
    assert torch.allclose(infonce_loss(logits, labels), manual, atol=1e-6)


def test_infonce_gradient_only_through_queries():
    q = torch.randn(2, 4, requires_grad=True)
    k = torch.randn(2, 4, requires_grad=True)
    logits, labels = infonce_logits(F.normalize(q, dim=1), k, torch.randn(3, 4), 0.1)
    infonce_loss(logits, labels).backward()
    assert q.grad is not None and k.grad is None


def test_topk_accuracy_values():
    logits = torch.tensor([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [2.0, 3.0, 1.0]])
    labels = torch.zeros(3, dtype=torch.long)
    assert topk_accuracy(logits, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(2 / 3)


def test_projection_head_shapes_and_identity():
    x = torch.randn(4, 6)
    assert torch.equal(ProjectionHead(6)(x), x)
    assert ProjectionHead(6, hidden_dim=10, output_dim=3, n_layers=3)(x).shape == (4, 3)
    with pytest.raises(ValueError):
        ProjectionHead(6, output_dim=3)


def test_distributed_helpers_are_identities_on_one_process():
    x = torch.randn(5, 3)
    lens = torch.rand(5)
    assert torch.equal(all_gather_nograd(x), x)
    y, ylens, idx = batch_shuffle(x, lens)
    assert torch.equal(y, x) and torch.equal(ylens, lens) and idx is None
    assert torch.equal(batch_unshuffle(y, idx), x)


def test_encoder_output_contract():
    assert check_embedding(torch.zeros(3, 1, 4), 3).shape == (3, 4)
    assert check_embedding(torch.zeros(3, 4), 3).shape == (3, 4)
    with pytest.raises(TypeError, match="tuple"):
        check_embedding((torch.zeros(3, 4),), 3)
    with pytest.raises(ValueError, match=r"\(3, 2, 4\)"):
        check_embedding(torch.zeros(3, 2, 4), 3)
    enc = torch.nn.Linear(5, 2)
    assert embed(lambda x: enc(x.mean(1)), torch.randn(3, 7, 5)).shape == (3, 2)


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 1.0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 1.0, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 1.0, 100, 10, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(1000, 1.0, 100, 10, 0.01) == pytest.approx(0.01)


def test_infonce_logits_stay_float32_under_bf16_autocast():
    torch.manual_seed(2)
    q = F.normalize(torch.randn(4, 16), dim=1)
    k = F.normalize(torch.randn(4, 16), dim=1)
    neg = F.normalize(torch.randn(32, 16), dim=1)
    ref, _ = infonce_logits(q, k, neg, 0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, _ = infonce_logits(q.bfloat16(), k, neg, 0.07)
    assert logits.dtype == torch.float32
    # only the bf16 rounding of the input q remains, the products are float32
    qb = q.bfloat16().float()
    expected = torch.cat([(qb * k).sum(1, keepdim=True), qb @ neg.t()], dim=1) / 0.07
    assert torch.allclose(logits, expected, atol=1e-5)
    assert torch.allclose(logits, ref, atol=0.1)


def test_check_batch_and_queue_errors_and_queue_warning():
    from speechbrain_moco.training import check_batch, check_queue

    with pytest.raises(ValueError, match="fewer than one global batch"):
        check_batch(10, 8, 2)
    check_batch(16, 8, 2)
    with pytest.raises(ValueError, match="queue_size=8 is smaller than the global batch"):
        check_queue(8, 8, 2, 100)
    assert check_queue(128, 8, 2, 1000) is None
    text = check_queue(128, 8, 2, 100)
    assert "queue_size=128 >= 100 training utterances" in text and "--queue_size=25" in text
    assert "--queue_size=16" in check_queue(64, 8, 2, 40)  # never below the global batch
