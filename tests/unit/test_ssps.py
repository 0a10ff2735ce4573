"""SSPS mechanics as sslsv runs them: a reference memory clustered by k-means, positives drawn
from a queue of recent keys, a positive never a negative, positive quality reported (issue 25)."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_moco.moco.infonce import infonce_logits
from speechbrain_moco.moco.ssps import PositiveSampler, ring_positions, spherical_kmeans, start_epoch


def clustered_memory(n_per=5, centres=4, dim=8, seed=0, spread=0.05):
    gen = torch.Generator().manual_seed(seed)
    c = F.normalize(torch.randn(centres, dim, generator=gen), dim=1)
    x = c.repeat_interleave(n_per, 0) + spread * torch.randn(centres * n_per, dim, generator=gen)
    return F.normalize(x, dim=1), torch.arange(centres).repeat_interleave(n_per)


def sampler(x, keys=None, queue_size=None, negatives=16, **kw):
    """A sampler whose reference memory is ``x``, clustered at epoch 2, with every row's key
    (``keys``, default ``x``) in its positive queue."""
    n = x.shape[0]
    opts = dict(start_epoch=2, n_clusters=4, neighbours=0, queue_size=queue_size or n, seed=0)
    opts.update(kw)
    s = PositiveSampler(**opts)
    s.allocate(n, x.shape[1], x.shape[1], negatives)
    s.write_reference(torch.arange(n), x)
    s.push(torch.arange(n), x if keys is None else keys, negative_ptr=0)
    assert s.refresh(2) and s.active()
    return s


def test_spherical_kmeans_recovers_separated_clusters():
    x, truth = clustered_memory()
    assign, centroids = spherical_kmeans(x, 4, seed=3)
    for c in range(4):
        assert assign[truth == c].unique().numel() == 1
    assert assign.unique().numel() == 4
    assert torch.allclose(centroids.norm(dim=1), torch.ones(4), atol=1e-5)
    with pytest.raises(ValueError, match="n_clusters=30"):
        spherical_kmeans(x, 30)


def test_own_cluster_positives_come_from_the_query_class_above_a_stated_rate():
    """A labelled toy memory (8 speakers x 10 utterances), over-clustered as the Folder yaml
    does (5 utterances a cluster): own-cluster positives are the query's speaker in at least
    90 % of draws (all of them here), never the query itself."""
    x, speaker = clustered_memory(n_per=10, centres=8, dim=16, spread=0.2, seed=0)
    s = sampler(x, n_clusters=16, queue_size=80)
    s.speakers = speaker
    gen = torch.Generator().manual_seed(0)
    queries = torch.arange(80).repeat(5)
    drawn = s.sample(queries, gen)
    got = drawn >= 0
    assert got.float().mean() > 0.95
    positive_slots = s.pos_slots[drawn[got]]
    assert (positive_slots != queries[got]).all()
    same = (speaker[positive_slots] == speaker[queries[got]]).float().mean()
    assert same >= 0.9
    report = s.epoch_report()
    assert report["ssps_same_speaker"] == pytest.approx(float(same), abs=1e-4)
    assert report["ssps_coverage"] == pytest.approx(float(got.float().mean()), abs=1e-4)


def test_neighbour_sampling_draws_from_the_nearest_other_cluster():
    x, _ = clustered_memory()
    s = sampler(x, neighbours=1)
    near = s.neighbour_table()
    queries = torch.arange(20)
    drawn = s.sample(queries, torch.Generator().manual_seed(0))
    assert (drawn >= 0).all()
    clusters = s.assign[s.pos_slots[drawn]]
    assert torch.equal(clusters, near[s.assign[queries], 0]) and (clusters != s.assign[queries]).all()


def test_positives_come_from_the_queue_and_coverage_falls_when_it_lacks_the_cluster():
    x, _ = clustered_memory()
    s = sampler(x, queue_size=5)  # the queue holds the last 5 rows: cluster 3 only
    keys = torch.randn(20, 8)
    positives, slots = s.positives(torch.arange(20), keys, torch.Generator().manual_seed(0))
    have = slots >= 0
    assert set(slots[have].tolist()) <= set(range(15, 20))  # drawn among the queued utterances
    assert torch.equal(positives[~have], keys[~have])  # the others keep their own key
    assert torch.allclose(positives[have], x[slots[have]])
    queued = s.pos_slots[s.pos_slots >= 0]
    expected = [
        any(int(s.assign[j]) == int(s.assign[i]) and j != i for j in queued.tolist()) for i in range(20)
    ]
    assert have.tolist() == expected and 0 < sum(expected) < 20
    assert s.epoch_report()["ssps_coverage"] == pytest.approx(sum(expected) / 20)


def test_no_drawn_positive_is_a_negative_of_its_query():
    """The step's keys go to both queues; a later query drawing an utterance's key finds that
    utterance's entries of the negative queue masked out of its softmax."""
    x, _ = clustered_memory()
    s = sampler(x, negatives=20)  # push() mirrored all 20 utterances into the negative queue
    negatives = x.clone()  # the negative queue holds the same keys
    queries = torch.arange(20)
    positives, drawn = s.positives(queries, x, torch.Generator().manual_seed(2))
    assert (drawn >= 0).all()
    mask = s.negative_mask(queries, drawn)
    logits, _ = infonce_logits(x, positives, negatives, 0.1, mask)
    for i in range(20):
        kept = negatives[~mask[i]]
        assert not any(torch.equal(positives[i], k) for k in kept)  # the positive is no negative
        assert not any(torch.equal(x[i], k) for k in kept)  # nor the query's own key
        assert torch.isinf(logits[i, 1:][mask[i]]).all() and torch.isfinite(logits[i, 1:][~mask[i]]).all()


def test_the_negative_mirror_follows_the_queue_pointer_and_wraps():
    s = PositiveSampler(start_epoch=2, queue_size=4)
    s.allocate(10, 2, 2, negatives=5)
    s.push(torch.tensor([0, 1, 2]), torch.randn(3, 2), negative_ptr=3)
    assert s.neg_slots.tolist() == [2, -1, -1, 0, 1] and s.pos_slots.tolist() == [0, 1, 2, -1]
    s.push(torch.tensor([3, 4, 5]), torch.randn(3, 2), negative_ptr=1)
    assert s.neg_slots.tolist() == [2, 3, 4, 5, 1] and s.pos_slots.tolist() == [4, 5, 2, 3]
    assert ring_positions(1, 6, 4).tolist() == [3, 0, 1, 2]


def test_refresh_schedule_determinism_and_start():
    x, _ = clustered_memory()
    s = sampler(x, refresh_epochs=2)
    first = s.assign.clone()
    assert not s.refresh(2)  # already clustered this epoch (a mid-epoch resume)
    assert not s.refresh(3)  # every 2 epochs from 2
    assert s.refresh(4)
    assert torch.equal(sampler(x, refresh_epochs=2).assign, first)  # seeded by (seed, epoch)
    assert s.filling(1) and not s.filling(None) and not PositiveSampler(start_epoch=5).filling(3)
    with pytest.raises(ValueError, match="ssps_start_epoch=1"):
        PositiveSampler(start_epoch=1)
    assert start_epoch(40, 8) == 33 and start_epoch(4, 8) == 2


def test_the_state_dict_round_trip_keeps_memories_and_clusters():
    x, _ = clustered_memory()
    s = sampler(x)
    fresh = PositiveSampler(start_epoch=2, n_clusters=4, queue_size=20)
    fresh.load_state_dict(s.state_dict())
    for name in ("reference", "written", "assign", "centroids", "pos_keys", "pos_slots", "neg_slots"):
        assert torch.equal(getattr(fresh, name), getattr(s, name)), name
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(fresh.sample(torch.arange(20), gen_a), s.sample(torch.arange(20), gen_b))


def test_an_utterance_twice_in_a_batch_keeps_its_last_reference():
    s = PositiveSampler(start_epoch=2)
    s.allocate(3, 2, 2, 4)
    s.write_reference(torch.tensor([0, 2, 0]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    assert torch.allclose(s.reference[0], F.normalize(torch.tensor([0.5, 0.5]), dim=0))
    assert s.written.tolist() == [True, False, True]
