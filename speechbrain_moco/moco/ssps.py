"""Self-supervised positive sampling (SSPS; Lepage & Dehak 2025, arXiv 2505.14561).

Two crops of one utterance share its channel, session and words: a contrastive model can
match them on those. SSPS replaces the positive of a query by the key of *another*
utterance that is close in the embedding space, so the positive pair shares the speaker but
not the recording. As sslsv runs it (``sslsv/methods/_SSPS``, mode ``kmeans-repr``):

- a **reference memory** holds one embedding per training utterance: the *query* encoder in
  ``eval()`` mode, without projector, on a clean (not augmented) crop, L2-normalised; it is
  written at every step for the utterances of the global batch, from the epoch before SSPS
  starts;
- at the start of every ``refresh_epochs``-th epoch from ``start_epoch`` on, spherical
  k-means over the reference memory gives pseudo-classes and, for each, its ``neighbours``
  nearest other clusters (``0``: the cluster itself, sslsv's ``inter_sampling_size`` 0);
- a **positive queue** holds the momentum keys of the last ``queue_size`` training rows with
  their utterances (what sslsv's ``train_embeddings_pos`` holds); the positive of query
  ``i`` (cluster ``c``) is a key drawn uniformly among the queue entries of a cluster drawn
  uniformly among ``c``'s neighbours, never one of ``i``'s own utterance; a query whose
  cluster has no member in the queue keeps its own key (the **coverage** is below 1);
- a drawn positive is **never also a negative**: the utterance of every entry of the MoCo
  negative queue is mirrored here, and the negatives of the drawn utterance (and of the
  query's own) are masked out of the query's InfoNCE.

When the training rows carry speaker ids, the share of drawn positives from the query's
speaker is counted (``same_speaker``): a report of positive quality, never used in training.
Everything that training needs is in buffers (checkpointed with the module); under DDP the
memories are written with every rank's rows and k-means runs on rank 0 and is broadcast.
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


def ring_positions(ptr, n, size, device=None):
    """Rows a FIFO ring of ``size`` rows at pointer ``ptr`` writes ``n`` items to (the last
    ``size`` items when ``n > size``, as :class:`~speechbrain_moco.moco.queue.KeyQueue`).

    Example
    -------
    >>> ring_positions(3, 2, 4).tolist(), ring_positions(1, 6, 4).tolist()
    ([3, 0], [3, 0, 1, 2])
    """
    if n >= size:
        start = (ptr + n - size) % size
        return (torch.arange(size, device=device) + start) % size
    return (torch.arange(n, device=device) + ptr) % size


class PositiveSampler(torch.nn.Module):
    """The SSPS memories, clusters and positive draw (see the module docstring).

    Arguments
    ---------
    start_epoch : int
        First epoch (1-based, >= 2) whose positives are sampled; the reference memory fills
        during the epoch before it.
    refresh_epochs : int
        Re-cluster the reference memory every this many epochs from ``start_epoch``.
    n_clusters : int or None
        Pseudo-classes; None = training utterances / ``cluster_size``.
    cluster_size : float
        Mean utterances per cluster when ``n_clusters`` is None.
    neighbours : int
        Draw the positive's cluster among this many nearest other clusters (sslsv's M);
        ``0``: the query's own cluster.
    queue_size : int
        Recent momentum keys the positives are drawn from.
    kmeans_iters : int
        k-means iterations per refresh.
    seed : int
        Seeds k-means (with the epoch).
    """

    def __init__(
        self,
        start_epoch,
        refresh_epochs=1,
        n_clusters=None,
        cluster_size=8.0,
        neighbours=0,
        queue_size=128,
        kmeans_iters=10,
        seed=0,
    ):
        super().__init__()
        if refresh_epochs < 1 or neighbours < 0 or cluster_size <= 0 or kmeans_iters < 1 or queue_size < 1:
            raise ValueError(
                "ssps: refresh_epochs >= 1, neighbours >= 0, cluster_size > 0, kmeans_iters >= 1, "
                f"queue_size >= 1 (got {refresh_epochs}, {neighbours}, {cluster_size}, {kmeans_iters}, "
                f"{queue_size})"
            )
        if start_epoch is None or start_epoch < 2:
            raise ValueError(
                f"ssps_start_epoch={start_epoch}: SSPS needs at least one epoch of plain MoCo to "
                "fill its reference memory (>= 2)"
            )
        self.start_epoch, self.refresh_epochs = int(start_epoch), int(refresh_epochs)
        self.n_clusters, self.cluster_size = n_clusters, float(cluster_size)
        self.neighbours, self.kmeans_iters, self.seed = int(neighbours), int(kmeans_iters), int(seed)
        self.queue_size = int(queue_size)
        for name, shape, dtype in (
            ("reference", (0, 0), torch.float32),
            ("written", (0,), torch.bool),
            ("assign", (0,), torch.long),
            ("centroids", (0, 0), torch.float32),
            ("pos_keys", (0, 0), torch.float32),
            ("pos_slots", (0,), torch.long),
            ("neg_slots", (0,), torch.long),
        ):
            self.register_buffer(name, torch.zeros(shape, dtype=dtype))
        self.register_buffer("pos_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("clustered_epoch", torch.tensor(-1))
        self.register_buffer("fingerprint", torch.tensor(0))
        self.speakers = None  # slot -> speaker index (-1 unknown): a report, never trained on
        self.stats = {"drawn": 0, "queries": 0, "same": 0, "known": 0}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the memories' sizes are the training set's: take the checkpoint's (fit checks them)
        for name in ("reference", "written", "assign", "centroids", "pos_keys", "pos_slots", "neg_slots"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def allocate(self, n_utterances, ref_dim, key_dim, negatives, fingerprint=0):
        """Size the memories (before a checkpoint loads): ``n_utterances`` reference rows of
        ``ref_dim``, a positive queue of ``key_dim`` keys, the utterances of a negative queue
        of ``negatives`` rows; ``fingerprint`` identifies the utterances' order."""
        self.fingerprint.fill_(int(fingerprint))
        device = self.reference.device
        self.reference = torch.zeros(n_utterances, ref_dim, device=device)
        self.written = torch.zeros(n_utterances, dtype=torch.bool, device=device)
        self.assign = torch.full((n_utterances,), -1, dtype=torch.long, device=device)
        self.centroids = torch.zeros(0, ref_dim, device=device)
        self.pos_keys = torch.zeros(self.queue_size, key_dim, device=device)
        self.pos_slots = torch.full((self.queue_size,), -1, dtype=torch.long, device=device)
        self.neg_slots = torch.full((negatives,), -1, dtype=torch.long, device=device)
        self.pos_ptr.fill_(0)
        self.clustered_epoch.fill_(-1)

    def filling(self, epoch):
        """True from the epoch before SSPS starts: the reference memory is being written."""
        return epoch is not None and epoch >= self.start_epoch - 1

    def active(self):
        """True when clusters exist: positives are being sampled."""
        return self.centroids.shape[0] > 0

    @torch.no_grad()
    def write_reference(self, slots, embeddings):
        """Store the reference embeddings (B, D) of utterances ``slots`` (every rank's rows);
        an utterance twice in a batch keeps its last row, the same on every rank."""
        last = torch.zeros(self.reference.shape[0], dtype=torch.long, device=slots.device)
        last.scatter_reduce_(0, slots, torch.arange(slots.numel(), device=slots.device), "amax")
        keep = last[slots] == torch.arange(slots.numel(), device=slots.device)
        self.reference[slots[keep]] = F.normalize(embeddings[keep].detach().float(), dim=1)
        self.written[slots[keep]] = True

    @torch.no_grad()
    def push(self, slots, keys, negative_ptr):
        """After a step: the step's keys (every rank's) join the positive queue, and their
        utterances are recorded where the negative queue (at ``negative_ptr`` before its
        enqueue) wrote them."""
        slots = slots.to(self.pos_slots.device)
        rows = ring_positions(int(self.pos_ptr), slots.numel(), self.queue_size, slots.device)
        self.pos_keys[rows] = keys[-rows.numel() :].detach().to(self.pos_keys.dtype)
        self.pos_slots[rows] = slots[-rows.numel() :]
        self.pos_ptr.fill_((int(self.pos_ptr) + slots.numel()) % self.queue_size)
        rows = ring_positions(negative_ptr, slots.numel(), self.neg_slots.numel(), slots.device)
        self.neg_slots[rows] = slots[-rows.numel() :]

    @torch.no_grad()
    def refresh(self, epoch):
        """At the start of ``epoch``: re-cluster the reference memory when due (True if done)."""
        if epoch < self.start_epoch or (epoch - self.start_epoch) % self.refresh_epochs:
            return False
        if int(self.clustered_epoch) == epoch:
            return False
        rows = self.written.nonzero().squeeze(1)
        if rows.numel() < 2:
            raise RuntimeError("SSPS: the reference memory is empty at the start of its first epoch")
        k = self.n_clusters or max(2, round(rows.numel() / self.cluster_size))
        k = min(k, rows.numel())
        assign = torch.full_like(self.assign, -1)
        centroids = torch.zeros(k, self.reference.shape[1], device=self.reference.device)
        if rank() == 0:
            local, centroids = spherical_kmeans(
                self.reference[rows], k, self.kmeans_iters, seed=self.seed * 100003 + epoch
            )
            assign[rows] = local
        if world_size() > 1:
            torch.distributed.broadcast(assign, src=0)
            torch.distributed.broadcast(centroids, src=0)
        self.assign, self.centroids = assign, centroids
        self.clustered_epoch.fill_(epoch)
        sizes = torch.bincount(assign[rows], minlength=k)
        logger.info(
            "SSPS epoch %d: %d reference embeddings in %d clusters (%d empty, largest %d), positives "
            "from %s, among the last %d keys",
            epoch,
            rows.numel(),
            k,
            int((sizes == 0).sum()),
            int(sizes.max()),
            "the own cluster" if self.neighbours == 0 else f"the {self.neighbours} nearest other cluster(s)",
            self.queue_size,
        )
        return True

    def neighbour_table(self):
        """(K, M) clusters a query of each cluster draws its positive's cluster from."""
        key = (int(self.clustered_epoch), self.centroids.data_ptr())
        if getattr(self, "_near", (None,))[0] != key:
            k = self.centroids.shape[0]
            sizes = torch.bincount(self.assign[self.assign >= 0], minlength=k)
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
            self._near = (key, near)
        return self._near[1]

    @torch.no_grad()
    def sample(self, slots, generator):
        """Positive-queue rows of the positives of utterances ``slots`` (B,); -1 where the
        drawn cluster has no member of another utterance in the queue."""
        out = torch.full_like(slots, -1)
        if not self.active():
            return out
        device = slots.device
        cluster = self.assign[slots]
        near = self.neighbour_table()
        pick = torch.randint(near.shape[1], (slots.numel(),), generator=generator).to(device)
        target = torch.where(cluster >= 0, near[cluster.clamp(min=0), pick], torch.full_like(cluster, -2))
        queued = self.pos_slots >= 0
        queue_cluster = torch.where(queued, self.assign[self.pos_slots.clamp(min=0)], -3)
        cand = (queue_cluster[None, :] == target[:, None]) & (self.pos_slots[None, :] != slots[:, None])
        score = torch.rand(cand.shape, generator=generator).to(device)
        score = torch.where(cand, score, torch.full_like(score, -1.0))
        best = score.argmax(dim=1)
        has = cand.any(dim=1)
        out[has] = best[has]
        self._count(slots, torch.where(has, self.pos_slots[best], torch.full_like(best, -1)))
        return out

    def _count(self, slots, drawn_slots):
        """Coverage and, with speakers known, the same-speaker share of the drawn positives."""
        has = drawn_slots >= 0
        self.stats["queries"] += slots.numel()
        self.stats["drawn"] += int(has.sum())
        if self.speakers is not None and bool(has.any()):
            spk = self.speakers.to(slots.device)
            q, p = spk[slots[has]], spk[drawn_slots[has]]
            known = (q >= 0) & (p >= 0)
            self.stats["known"] += int(known.sum())
            self.stats["same"] += int((q[known] == p[known]).sum())

    def positives(self, slots, keys, generator):
        """The positive keys of a batch and the utterance each came from: a queue key of
        another utterance of the drawn cluster, or the query's own key (slot -1)."""
        drawn = self.sample(slots, generator)
        has = drawn >= 0
        pos_slots = torch.full_like(slots, -1)
        if not bool(has.any()):
            return keys, pos_slots
        out = keys.clone()
        out[has] = self.pos_keys[drawn[has]].to(keys.dtype)
        pos_slots[has] = self.pos_slots[drawn[has]]
        return out, pos_slots

    def negative_mask(self, slots, positive_slots):
        """(B, K) True where a negative queue entry is of the query's utterance or of its
        drawn positive's: left out of that query's InfoNCE (a positive is never a negative)."""
        neg = self.neg_slots[None, :]
        own = (neg == slots[:, None]) & (slots[:, None] >= 0)
        drawn = (neg == positive_slots[:, None]) & (positive_slots[:, None] >= 0)
        return own | drawn

    def epoch_report(self):
        """``ssps_coverage`` and (speakers known) ``ssps_same_speaker`` since the last call."""
        s = self.stats
        out = {"ssps_coverage": round(s["drawn"] / s["queries"], 4) if s["queries"] else 0.0}
        if s["known"]:
            out["ssps_same_speaker"] = round(s["same"] / s["known"], 4)
        self.stats = {"drawn": 0, "queries": 0, "same": 0, "known": 0}
        return out


def start_epoch(number_of_epochs, ssps_epochs):
    """The first SSPS epoch when the last ``ssps_epochs`` of ``number_of_epochs`` sample
    positives (at least 2: one epoch of plain MoCo fills the reference memory).

    Example
    -------
    >>> start_epoch(40, 8), start_epoch(3, 8)
    (33, 2)
    """
    if ssps_epochs < 1:
        raise ValueError(f"ssps_epochs={ssps_epochs} must be >= 1")
    return max(2, int(number_of_epochs) - int(ssps_epochs) + 1)
