"""What keeps pseudo-label noise from compounding: the cluster count, the margin schedule,
the loss gate (issue 19)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from speechbrain.utils.epoch_loop import EpochCounter

from speechbrain_moco.pseudo_labels import clustering_quality, estimate_n_clusters, spectral_clusters
from speechbrain_moco.training import SpeakerBrain


def blobs(sizes, dim=24, spread=0.45, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    x = np.concatenate([c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


def test_spectral_clustering_counts_unequal_speakers():
    x, truth = blobs([30, 12, 20, 8, 25, 15, 10, 18])
    labels, report = spectral_clusters(x, seed=0)
    assert report["n_clusters"] == 8
    assert clustering_quality(labels, truth)["purity"] > 0.95
    given, info = spectral_clusters(x, n_clusters=5)
    assert info["n_clusters"] == 5 and np.unique(given).size == 5
    with pytest.raises(ValueError, match="max_rows=10"):
        spectral_clusters(x, max_rows=10)
    with pytest.raises(ValueError, match="n_clusters=138"):
        spectral_clusters(x, n_clusters=138)
    # a tiny set: the count may reach max_clusters
    small, _ = blobs([3, 3, 3], spread=0.05)
    assert spectral_clusters(small, max_clusters=3)[1]["n_clusters"] == 3


def test_spectral_count_is_not_below_the_silhouette_estimate_on_close_speakers():
    """Close speakers: the silhouette maximum merges them; the eigengap should not merge more."""
    x, truth = blobs([14] * 12, spread=0.9, seed=3)
    k_sil, _ = estimate_n_clusters(x, seed=0)
    _, report = spectral_clusters(x, seed=0)
    assert report["n_clusters"] >= k_sil


def speaker_brain(**hparams):
    loss = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    hp = dict(
        lr=0.01,
        final_lr=0.0,
        number_of_epochs=4,
        warmup_epochs=0,
        init_from=None,
        freeze_epochs=0,
        encoder_lr_scale=1.0,
        rewarm_epochs=0,
        margin=0.2,
        margin_warmup_epochs=0,
        loss_gate=None,
        loss_gate_epoch=1,
        compute_cost=loss,
        epoch_counter=EpochCounter(4),
    )
    hp.update(hparams)
    modules = {"embedding_model": torch.nn.Linear(4, 3), "classifier": torch.nn.Linear(3, 2)}
    brain = SpeakerBrain(modules=modules, opt_class=torch.optim.SGD, hparams=hp, run_opts={"device": "cpu"})
    brain.steps_per_epoch = 10
    brain.gate_kept = brain.gate_seen = 0
    return brain


def test_margin_warmup_grows_linearly_then_holds():
    brain = speaker_brain(margin_warmup_epochs=2)
    margins = []
    for step in (0, 9, 19, 30):
        brain.optimizer_step = step
        margins.append(brain.current_margin())
    assert margins == pytest.approx([0.01, 0.1, 0.2, 0.2])
    logits = torch.rand(3, 1, 2) * 2 - 1
    batch = SimpleNamespace(spk_id_encoded=(torch.tensor([[0], [1], [0]]), None))
    brain.optimizer_step = 0
    import speechbrain as sb

    brain.compute_objectives((logits, None), batch, sb.Stage.TRAIN)
    assert brain.hparams.compute_cost.loss_fn.margin == pytest.approx(0.01)
    brain.compute_objectives((logits, None), batch, sb.Stage.VALID)  # validation: the full margin
    assert brain.hparams.compute_cost.loss_fn.margin == pytest.approx(0.2)


def test_loss_gate_leaves_out_the_samples_above_it():
    import speechbrain as sb

    from speechbrain_moco.training.speaker_brain import aam_losses

    brain = speaker_brain(loss_gate=2.0)
    brain.hparams.epoch_counter.current = 1
    # rows 0 and 1 agree with their label (low loss), row 2 is confidently wrong (high loss)
    logits = torch.tensor([[[0.9, -0.9]], [[-0.9, 0.9]], [[0.9, -0.9]]], requires_grad=True)
    spk = torch.tensor([[0], [1], [1]])
    batch = SimpleNamespace(spk_id_encoded=(spk, None))
    loss = brain.compute_objectives((logits, None), batch, sb.Stage.TRAIN)
    each = aam_losses(brain.hparams.compute_cost.loss_fn, logits, spk)
    assert each[2] > 2.0 > each[:2].max()
    assert float(loss) == pytest.approx(float(each[:2].mean()))
    assert (brain.gate_kept, brain.gate_seen) == (2, 3)
    loss.backward()
    assert logits.grad[2].abs().sum() == 0  # the gated sample teaches nothing
    # before loss_gate_epoch, every sample counts
    late = speaker_brain(loss_gate=2.0, loss_gate_epoch=3)
    late.hparams.epoch_counter.current = 1
    full = late.compute_objectives((logits, None), batch, sb.Stage.TRAIN)
    assert float(full) == pytest.approx(float(each.mean()), rel=1e-5)
