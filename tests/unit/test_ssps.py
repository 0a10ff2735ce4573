"""SSPS mechanics: k-means, the positive draw, the memory (issue 19)."""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_moco.moco.ssps import PositiveSampler, spherical_kmeans


def clustered_memory(n_per=5, centres=4, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = F.normalize(torch.randn(centres, dim, generator=gen), dim=1)
    x = c.repeat_interleave(n_per, 0) + 0.05 * torch.randn(centres * n_per, dim, generator=gen)
    return F.normalize(x, dim=1), torch.arange(centres).repeat_interleave(n_per)


def sampler(x, **kw):
    opts = dict(start_epoch=2, n_clusters=4, neighbours=1, seed=0)
    opts.update(kw)
    s = PositiveSampler(**opts)
    s.allocate(x.shape[0], x.shape[1])
    s.write(torch.arange(x.shape[0]), x)
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


def test_the_positive_is_another_utterance_of_the_nearest_other_cluster():
    x, _ = clustered_memory()
    s = sampler(x, neighbours=1)
    near, _, _, _ = s.tables()
    gen = torch.Generator().manual_seed(0)
    queries = torch.arange(20)
    for _ in range(5):
        drawn = s.sample(queries, gen)
        assert (drawn >= 0).all() and (drawn != queries).all()
        # from the one nearest other cluster, never the query's own
        assert torch.equal(s.assign[drawn], near[s.assign[queries], 0])
        assert (s.assign[drawn] != s.assign[queries]).all()
    assert s.coverage() == 1.0


def test_neighbours_zero_draws_from_the_own_cluster_never_the_query():
    x, _ = clustered_memory()
    s = sampler(x, neighbours=0)
    gen = torch.Generator().manual_seed(1)
    queries = torch.arange(20).repeat(5)
    drawn = s.sample(queries, gen)
    assert torch.equal(s.assign[drawn], s.assign[queries]) and (drawn != queries).all()
    # all 4 others of a cluster of 5 come up
    assert set(drawn[queries == 0].tolist()) | {0} <= set(
        (s.assign == s.assign[0]).nonzero().squeeze(1).tolist()
    )
    positives = s.positives(torch.tensor([0, 1]), torch.zeros(2, 8), gen)
    assert torch.allclose(positives.norm(dim=1), torch.ones(2))  # memory keys replaced the zeros


def test_a_query_without_candidates_keeps_its_own_key():
    x, _ = clustered_memory(n_per=1, centres=4)
    s = sampler(x, neighbours=0)  # 4 singleton clusters: nobody else in the own cluster
    own = torch.randn(4, 8)
    out = s.positives(torch.arange(4), own, torch.Generator().manual_seed(0))
    assert torch.equal(out, own) and s.coverage() == 0.0


def test_refresh_schedule_and_determinism():
    x, _ = clustered_memory()
    s = sampler(x, refresh_epochs=2)
    first = s.assign.clone()
    assert not s.refresh(2)  # already clustered this epoch (a mid-epoch resume)
    assert not s.refresh(3)  # every 2 epochs from 2
    assert s.refresh(4)
    again = sampler(x, refresh_epochs=2)
    assert torch.equal(again.assign, first)  # seeded by (seed, epoch)
    off = PositiveSampler(start_epoch=None)
    off.allocate(20, 8)
    assert not off.enabled and off.memory.numel() == 0 and not off.refresh(5)
    with pytest.raises(ValueError, match="ssps_start_epoch=1"):
        PositiveSampler(start_epoch=1)


def test_the_state_dict_round_trip_keeps_memory_and_clusters():
    x, _ = clustered_memory()
    s = sampler(x)
    fresh = PositiveSampler(start_epoch=2, n_clusters=4, neighbours=1)
    fresh.load_state_dict(s.state_dict())
    for name in ("memory", "written", "assign", "centroids", "clustered_epoch"):
        assert torch.equal(getattr(fresh, name), getattr(s, name)), name
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(fresh.sample(torch.arange(20), gen_a), s.sample(torch.arange(20), gen_b))


def test_empty_clusters_are_never_a_neighbour():
    x, _ = clustered_memory()
    s = sampler(x, n_clusters=4, neighbours=3)
    s.centroids = torch.cat([s.centroids, F.normalize(torch.randn(2, 8), dim=1)])  # two empty ones
    s.clustered_epoch.fill_(9)  # new tables
    near, _, _, sizes = s.tables()
    assert (sizes[near] > 0).all() and near.shape == (6, 3)
    drawn = s.sample(torch.arange(20), torch.Generator().manual_seed(0))
    assert (drawn >= 0).all()


def test_an_utterance_twice_in_a_batch_keeps_its_last_key():
    s = PositiveSampler(start_epoch=2)
    s.allocate(3, 2)
    s.write(torch.tensor([0, 2, 0]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
    assert torch.equal(s.memory[0], torch.tensor([0.5, 0.5])) and s.written.tolist() == [True, False, True]
