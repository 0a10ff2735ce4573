"""Self-supervised positive sampling (SSPS; Lepage & Dehak 2025, arXiv 2505.14561).

Two crops of one utterance share its channel, session and words: a contrastive model can
match them on those. SSPS replaces the positive of a query by the key of *another*
utterance that is close in the embedding space, so the positive pair shares the speaker but
not the recording. As in sslsv's ``SSPS`` (mode ``kmeans-repr``):

- a memory holds one momentum-encoder key per training utterance (written at every step
  for the utterances of the global batch, so it is at most one epoch old);
- at the start of an epoch, every ``refresh_epochs`` from ``start_epoch`` on, spherical
  k-means over the memory gives pseudo-classes and, for each cluster, its ``neighbours``
  nearest other clusters (``0``: the cluster itself);
- the positive of query ``i`` (cluster ``c``) is the memory key of an utterance drawn
  uniformly from a cluster drawn uniformly among ``c``'s neighbours, never ``i`` itself; a
  query with no candidate keeps its own key (the coverage is logged).

Where sslsv draws the positive among a FIFO queue of recent keys, this draws it from the
whole memory: on the small corpora of this toolkit a queue holds a few hundred keys, so few
clusters would have a candidate. Everything is in buffers (checkpointed with the module);
under DDP the memory is written with the keys of every rank and k-means runs on rank 0 and
is broadcast, so the ranks hold the same memory and clusters.
"""

import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

from speechbrain_moco.moco.distributed import rank, world_size

logger = get_logger(__name__)


@torch.no_grad()
def spherical_kmeans(x, n_clusters, iters=10, seed=0, block=2**26):
    """Spherical k-means of L2-normalised rows ``x`` (N, D); returns ``(assign, centroids)``.

    Initialised with ``n_clusters`` distinct rows drawn with ``seed``; a cluster left empty
    keeps its centroid. Assignments are computed in chunks of rows holding at most ``block``
    similarities (256 MB in float32) whatever the number of clusters.

    Example
    -------
    >>> x = F.normalize(torch.tensor([[1.0, 0.1], [1.0, -0.1], [-0.1, 1.0], [0.1, 1.0]]), dim=1)
    >>> assign, c = spherical_kmeans(x, 2, seed=0)
    >>> bool(assign[0] == assign[1] != assign[2] == assign[3]), tuple(c.shape)
    (True, (2, 2))
    """
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters={n_clusters} must be in [1, {n}]")
    gen = torch.Generator().manual_seed(int(seed))
    centroids = x[torch.randperm(n, generator=gen)[:n_clusters].to(x.device)].clone()

    chunk = max(1, block // n_clusters)

    def assign_rows():
        return torch.cat([(x[i : i + chunk] @ centroids.T).argmax(dim=1) for i in range(0, n, chunk)])

    for _ in range(iters):
        assign = assign_rows()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=n_clusters)
        full = counts > 0
        centroids[full] = F.normalize(sums[full], dim=1)
    return assign_rows(), centroids


class PositiveSampler(torch.nn.Module):
    """The SSPS memory, its clusters and the positive draw (see module docstring).

    Arguments
    ---------
    start_epoch : int or None
        First epoch (1-based) whose positives are sampled; None = SSPS off (plain MoCo).
    refresh_epochs : int
        Re-cluster the memory every this many epochs from ``start_epoch``.
    n_clusters : int or None
        Pseudo-classes; None = training utterances / ``cluster_size``.
    cluster_size : float
        Mean utterances per cluster when ``n_clusters`` is None (sslsv's best VoxCeleb2
        setting, 25k clusters of 1.09 M utterances, is about 4 clusters per speaker).
    neighbours : int
        Draw the positive's cluster among this many nearest other clusters (sslsv's M;
        ``0``: the query's own cluster, the query itself excluded).
    kmeans_iters : int
        k-means iterations per refresh.
    seed : int
        Seeds k-means (with the epoch) and the draws (with the step and rank).
    """

    def __init__(
        self,
        start_epoch=None,
        refresh_epochs=1,
        n_clusters=None,
        cluster_size=4.0,
        neighbours=1,
        kmeans_iters=10,
        seed=0,
    ):
        super().__init__()
        if refresh_epochs < 1 or neighbours < 0 or cluster_size <= 0 or kmeans_iters < 1:
            raise ValueError(
                "ssps: refresh_epochs >= 1, neighbours >= 0, cluster_size > 0, kmeans_iters >= 1 "
                f"(got {refresh_epochs}, {neighbours}, {cluster_size}, {kmeans_iters})"
            )
        if start_epoch is not None and start_epoch < 2:
            raise ValueError(
                f"ssps_start_epoch={start_epoch}: SSPS needs at least one epoch of plain MoCo "
                "to fill its memory (>= 2, or null for plain MoCo)"
            )
        self.start_epoch, self.refresh_epochs = start_epoch, int(refresh_epochs)
        self.n_clusters, self.cluster_size = n_clusters, float(cluster_size)
        self.neighbours, self.kmeans_iters, self.seed = int(neighbours), int(kmeans_iters), int(seed)
        self.register_buffer("memory", torch.zeros(0, 0))
        self.register_buffer("written", torch.zeros(0, dtype=torch.bool))
        self.register_buffer("assign", torch.zeros(0, dtype=torch.long))
        self.register_buffer("centroids", torch.zeros(0, 0))
        self.register_buffer("clustered_epoch", torch.tensor(-1))
        self.register_buffer("fingerprint", torch.tensor(0))
        self.stats = {"drawn": 0, "queries": 0}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the memory's size is the training set's: take the checkpoint's (fit checks it)
        for name in ("memory", "written", "assign", "centroids"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def enabled(self):
        """False for plain MoCo (``start_epoch`` None): no memory is kept."""
        return self.start_epoch is not None

    def allocate(self, n_utterances, dim, fingerprint=0):
        """Size the memory for ``n_utterances`` keys of ``dim`` (before a checkpoint loads);
        ``fingerprint`` identifies the utterances' order (checked after a resume)."""
        self.fingerprint.fill_(int(fingerprint))
        if self.enabled and tuple(self.memory.shape) != (n_utterances, dim):
            device = self.memory.device
            self.memory = torch.zeros(n_utterances, dim, device=device)
            self.written = torch.zeros(n_utterances, dtype=torch.bool, device=device)
            self.assign = torch.full((n_utterances,), -1, dtype=torch.long, device=device)
            self.centroids = torch.zeros(0, dim, device=device)
            self.clustered_epoch.fill_(-1)

    def active(self):
        """True when clusters exist: positives are being sampled."""
        return self.enabled and self.centroids.shape[0] > 0

    @torch.no_grad()
    def write(self, indices, keys):
        """Store the keys (B, D) of utterances ``indices`` (B,) (every rank's, gathered)."""
        if not self.enabled:
            return
        # an utterance twice in a global batch (a sampler with replacement, DDP padding):
        # keep its last key, the same on every device and rank
        last = torch.zeros(self.memory.shape[0], dtype=torch.long, device=indices.device)
        last.scatter_reduce_(0, indices, torch.arange(indices.numel(), device=indices.device), "amax")
        keep = last[indices] == torch.arange(indices.numel(), device=indices.device)
        self.memory[indices[keep]] = keys[keep].detach().to(self.memory.dtype)
        self.written[indices[keep]] = True

    @torch.no_grad()
    def refresh(self, epoch):
        """At the start of ``epoch``: re-cluster when SSPS is due (returns True if it did)."""
        if not self.enabled or epoch < self.start_epoch:
            return False
        if (epoch - self.start_epoch) % self.refresh_epochs or int(self.clustered_epoch) == epoch:
            return False
        rows = self.written.nonzero().squeeze(1)
        k = self.n_clusters or max(2, round(rows.numel() / self.cluster_size))
        k = min(k, rows.numel())
        assign = torch.full_like(self.assign, -1)
        centroids = torch.zeros(k, self.memory.shape[1], device=self.memory.device)
        if rank() == 0:
            x = F.normalize(self.memory[rows], dim=1)
            local, centroids = spherical_kmeans(x, k, self.kmeans_iters, seed=self.seed * 100003 + epoch)
            assign[rows] = local
        if world_size() > 1:
            torch.distributed.broadcast(assign, src=0)
            torch.distributed.broadcast(centroids, src=0)
        self.assign, self.centroids = assign, centroids
        self.clustered_epoch.fill_(epoch)
        sizes = torch.bincount(assign[rows], minlength=k)
        logger.info(
            "SSPS epoch %d: %d keys in %d clusters (%d empty, largest %d), positives from %s",
            epoch,
            rows.numel(),
            k,
            int((sizes == 0).sum()),
            int(sizes.max()),
            "the own cluster" if self.neighbours == 0 else f"the {self.neighbours} nearest other cluster(s)",
        )
        return True

    def tables(self):
        """``(neighbours (K, M), members sorted by cluster, first member of each cluster,
        cluster sizes)``, computed once per clustering (also after a checkpoint loads)."""
        key = (int(self.clustered_epoch), self.centroids.data_ptr(), self.assign.data_ptr())
        if getattr(self, "_tables", (None,))[0] != key:
            k = self.centroids.shape[0]
            valid = self.assign >= 0
            order = torch.argsort(torch.where(valid, self.assign, k), stable=True)
            sizes = torch.bincount(self.assign[valid], minlength=k)
            first = torch.cumsum(sizes, 0) - sizes
            filled = sizes > 0
            if self.neighbours == 0 or int(filled.sum()) < 2:
                near = torch.arange(k, device=self.centroids.device).unsqueeze(1)
            else:  # in row chunks: K x K similarities at VoxCeleb scale would not fit
                m = min(self.neighbours, int(filled.sum()) - 1)
                near = []
                for i in range(0, k, 4096):
                    sim = self.centroids[i : i + 4096] @ self.centroids.T
                    sim[:, ~filled] = -float("inf")  # an empty cluster has no positive to give
                    sim[torch.arange(sim.shape[0]), torch.arange(i, i + sim.shape[0])] = -float("inf")
                    near.append(sim.topk(m, dim=1).indices)
                near = torch.cat(near)
            self._tables = (key, (near, order, first, sizes))
        return self._tables[1]

    @torch.no_grad()
    def sample(self, indices, generator):
        """Memory rows of the positives of utterances ``indices`` (B,); -1 where none."""
        out = torch.full_like(indices, -1)
        if not self.active():
            return out
        near, order, first, sizes = self.tables()
        for row, idx in enumerate(indices.tolist()):
            c = int(self.assign[idx])
            if c < 0:
                continue
            target = int(near[c, int(torch.randint(near.shape[1], (), generator=generator))])
            members = order[int(first[target]) : int(first[target] + sizes[target])]
            if target == c:
                members = members[members != idx]  # never the query itself
            if members.numel() == 0:
                continue
            out[row] = members[int(torch.randint(members.numel(), (), generator=generator))]
        self.stats["queries"] += indices.numel()
        self.stats["drawn"] += int((out >= 0).sum())
        return out

    def positives(self, indices, keys, generator):
        """The positive keys of a batch: the memory key drawn for each query, or its own."""
        drawn = self.sample(indices, generator)
        has = drawn >= 0
        if not bool(has.any()):
            return keys
        out = keys.clone()
        out[has] = F.normalize(self.memory[drawn[has]].to(keys.dtype), dim=1)
        return out

    def coverage(self):
        """Share of the queries since the last call that got another utterance's key."""
        share = self.stats["drawn"] / self.stats["queries"] if self.stats["queries"] else 0.0
        self.stats = {"drawn": 0, "queries": 0}
        return share
