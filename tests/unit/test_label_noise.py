"""What keeps pseudo-label noise from compounding: the cluster count, the margin schedule,
the loss gate (issue 19)."""

import math
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
        loss_gate_relabel=None,
        l2sp_weight=0.0,
        scale=30,
        compute_cost=loss,
        epoch_counter=EpochCounter(4),
    )
    hp.update(hparams)
    modules = {"embedding_model": torch.nn.Linear(4, 3), "classifier": torch.nn.Linear(3, 2)}
    brain = SpeakerBrain(modules=modules, opt_class=torch.optim.SGD, hparams=hp, run_opts={"device": "cpu"})
    brain.steps_per_epoch = 10
    brain.gate_kept = brain.gate_seen = brain.gate_relabelled = 0
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


def test_label_correction_trains_a_confident_gated_sample_on_its_top_class():
    import speechbrain as sb

    from speechbrain_moco.training.speaker_brain import aam_losses

    brain = speaker_brain(loss_gate=2.0, loss_gate_relabel=0.9)
    brain.hparams.epoch_counter.current = 1
    # row 2 is labelled 1 but confidently class 0: gated, then trained on class 0
    logits = torch.tensor([[[0.9, -0.9]], [[-0.9, 0.9]], [[0.9, -0.9]]], requires_grad=True)
    batch = SimpleNamespace(spk_id_encoded=(torch.tensor([[0], [1], [1]]), None))
    loss = brain.compute_objectives((logits, None), batch, sb.Stage.TRAIN)
    fixed = aam_losses(brain.hparams.compute_cost.loss_fn, logits, torch.tensor([[0], [1], [0]]))
    assert float(loss) == pytest.approx(float(fixed.mean()))
    assert (brain.gate_kept, brain.gate_relabelled, brain.gate_seen) == (2, 1, 3)
    # an unsure top class (under the threshold) stays gated out
    brain = speaker_brain(loss_gate=2.0, loss_gate_relabel=0.9)
    brain.hparams.epoch_counter.current = 1
    unsure = torch.tensor([[[0.9, -0.9]], [[-0.9, 0.9]], [[0.01, -0.01]]])
    each = aam_losses(brain.hparams.compute_cost.loss_fn, unsure, batch.spk_id_encoded[0])
    if each[2] > 2.0:
        loss = brain.compute_objectives((unsure, None), batch, sb.Stage.TRAIN)
        assert float(loss) == pytest.approx(float(each[:2].mean())) and brain.gate_relabelled == 0


def test_l2sp_pulls_an_initialised_encoder_towards_its_start_and_never_a_frozen_one():
    brain = speaker_brain(l2sp_weight=0.5, init_from="runs/moco", freeze_epochs=1)
    encoder = brain.modules.embedding_model
    brain.l2sp_start = [p.detach().clone() for p in encoder.parameters()]
    with torch.no_grad():
        encoder.weight.add_(0.1)
    loss = torch.tensor(2.0)
    brain.hparams.epoch_counter.current = 1  # frozen: no penalty
    assert brain.l2sp_penalty(loss) == 0.0
    brain.hparams.epoch_counter.current = 2
    penalty = brain.l2sp_penalty(loss)
    distance = 0.01 * encoder.weight.numel()
    assert float(penalty) == pytest.approx(0.5 * 2.0 * distance / (distance + 1e-5))
    penalty.backward()  # the pull: weight x loss x 2 (w - w0) / d
    expected = 0.5 * 2.0 * 2 * 0.1 / (distance + 1e-5)
    assert torch.allclose(encoder.weight.grad, torch.full_like(encoder.weight, expected))
    assert speaker_brain(l2sp_weight=0.5).l2sp_penalty(loss) == 0.0  # a scratch run has no anchor


def test_subcenter_head_takes_the_best_of_its_centres():
    from speechbrain_moco.training.classifier import SubcenterClassifier, speaker_classifier

    head = SubcenterClassifier(input_size=2, out_neurons=2, subcenters=2)
    with torch.no_grad():  # class 0: centres at 0 and 90 degrees; class 1: at 180 degrees (twice)
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.0]]))
    out = head(torch.tensor([[[0.0, 2.0]], [[-1.0, 0.0]]]))
    assert torch.allclose(out, torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), atol=1e-6)
    with pytest.raises(ValueError, match="aam_subcenters"):
        speaker_classifier(2, 2, 0)


def speakers_in_groups(n_speakers, per, seed=0, dim=64, spread=1.1):
    """Synthetic utterance embeddings: speakers nested in 4 groups (gender x age), a
    within-speaker spread that leaves a cosine EER of about 2 % (at 125 x 13)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_speakers, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    groups = rng.standard_normal((4, dim)) * 0.5
    centres += 0.3 * groups[rng.integers(0, 4, n_speakers)]
    x = np.repeat(centres, per, axis=0) + spread / np.sqrt(dim) * rng.standard_normal((n_speakers * per, dim))
    return x, np.repeat(np.arange(n_speakers), per)


@pytest.mark.parametrize("n_speakers, per", [(30, 13), (125, 13), (500, 6)])
def test_the_eigengap_count_holds_at_every_corpus_size(n_speakers, per):
    """Within 20 % of the truth at 30, 125 and 500 speakers (issue 25): the neighbourhood
    search starts at 2 and stops where the count collapses into the speaker groups (the
    old grid, from 1 % of the rows, found 4 clusters for the 500 speakers)."""
    x, truth = speakers_in_groups(n_speakers, per)
    labels, report = spectral_clusters(x, seed=0)
    assert abs(report["n_clusters"] - n_speakers) <= 0.2 * n_speakers, report["count_by_p"]
    assert clustering_quality(labels, truth)["nmi"] > 0.9


def test_auto_gate_fits_the_next_epochs_threshold_from_this_epochs_losses():
    import speechbrain as sb

    from speechbrain_moco.training.speaker_brain import gmm_gate

    rng = np.random.default_rng(0)
    clean, noisy = np.exp(rng.normal(0, 0.3, 900)), np.exp(rng.normal(2.5, 0.3, 100))
    gate = gmm_gate(np.concatenate([clean, noisy]))
    assert (clean <= gate).mean() > 0.97 and (noisy > gate).mean() > 0.97
    assert gmm_gate(np.ones(50)) == float("inf")  # nothing to split
    brain = speaker_brain(loss_gate="auto", loss_gate_epoch=2)
    brain.on_stage_end = lambda *a: None  # no logger here
    brain.hparams.epoch_counter.current = 1
    logits = torch.tensor([[[0.9, -0.9]], [[-0.9, 0.9]], [[0.9, -0.9]]], requires_grad=True)
    batch = SimpleNamespace(spk_id_encoded=(torch.tensor([[0], [1], [1]]), None))
    full = brain.compute_objectives((logits, None), batch, sb.Stage.TRAIN)  # no gate yet
    assert len(brain.epoch_losses) == 1 and math.isnan(float(brain.gate_threshold.value))
    brain.gate_threshold.value.fill_(2.0)
    brain.hparams.epoch_counter.current = 2
    gated = brain.compute_objectives((logits, None), batch, sb.Stage.TRAIN)
    assert float(gated) < float(full) and brain.gate_kept == 2
