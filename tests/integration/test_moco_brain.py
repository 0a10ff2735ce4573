"""A tiny real MoCoBrain built from the Folder recipe's yaml: invariants and resume."""

import math
import os

import pytest
import speechbrain as sb
import torch
from conftest import load_recipe
from hyperpyyaml import load_hyperpyyaml

from data_prep.folder_prepare import prepare_folder
from speechbrain_moco.training import MoCoBrain

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
RECIPE = load_recipe("Folder", "MoCo", "train_moco.py")
YAML = os.path.join(ROOT, "recipes", "Folder", "MoCo", "hparams", "moco.yaml")


class RecordingBrain(MoCoBrain):
    """Records the loss of every training step."""

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        self.losses = getattr(self, "losses", []) + [float(loss.detach())]


def build(corpus, out, brain_class=None, run_opts=None, prepare=True, yaml=YAML, **overrides):
    opts = {
        "data_folder": corpus,
        "output_folder": str(out),
        "channels": 16,
        "emb_dim": 16,
        "n_mels": 24,
        "batch_size": 4,
        "queue_size": 12,
        "crop_seconds": 0.5,
        "num_workers": 0,
        "number_of_epochs": 2,
        "valid_ratio": 0.1,
        "seed": 7,
    }
    opts.update(overrides)
    with open(yaml, encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, opts)
    if prepare:  # False: keep the manifests already written (files changed since)
        prepare_folder(
            corpus,
            hp["manifest_folder"],
            verification_file=None,
            valid_ratio=hp["valid_ratio"],
            seed=hp["seed"],
        )
    data = dict(zip(("train", "valid", "loaders"), RECIPE.dataio_prep(hp, os.path.abspath(corpus))))
    brain = (brain_class or RecordingBrain)(
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts=dict({"device": "cpu"}, **(run_opts or {})),
        checkpointer=hp["checkpointer"],
    )
    return brain, hp, data


def fit(brain, hp, data):
    brain.fit(hp["epoch_counter"], data["train"], data["valid"], **data["loaders"])


def test_key_branch_gets_no_gradient_and_no_optimiser_slot(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "a", number_of_epochs=1)
    fit(brain, hp, data)
    key_params = list(brain.modules.key_model.parameters()) + list(brain.modules.key_projector.parameters())
    assert key_params and all(not p.requires_grad and p.grad is None for p in key_params)
    opt_ids = {id(p) for g in brain.optimizer.param_groups for p in g["params"]}
    assert not opt_ids & {id(p) for p in key_params}
    query_ids = {id(p) for p in brain.modules.embedding_model.parameters()}
    assert query_ids <= opt_ids
    # the EMA moved the key encoder towards the trained query encoder, not onto it
    q = dict(brain.modules.embedding_model.named_parameters())
    k = dict(brain.modules.key_model.named_parameters())
    name = next(iter(q))
    assert not torch.equal(q[name], k[name])


def test_validation_pass_leaves_queue_and_key_branch_untouched(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "v", number_of_epochs=1)
    fit(brain, hp, data)
    queue = {k: v.clone() for k, v in brain.modules.queue.state_dict().items()}
    key = {k: v.clone() for k, v in brain.modules.key_model.state_dict().items()}
    brain.evaluate(data["valid"], test_loader_kwargs=hp["valid_dataloader_options"], progressbar=False)
    for name, value in brain.modules.queue.state_dict().items():
        assert torch.equal(value, queue[name])
    for name, value in brain.modules.key_model.state_dict().items():
        assert torch.equal(value, key[name])
    # evaluate() reports; it neither checkpoints nor moves the step counters
    assert len(brain.checkpointer.list_checkpoints()) == 1
    assert "test loss" in open(hp["train_log"]).read()


def test_training_steps_enqueue_keys_and_loss_falls(tone_corpus, tmp_path):
    # The tone corpus's speakers differ by spectrum alone: with the global feature normalisation
    # the pretext is solved from the first steps (losses ~0.01) and cannot fall, so this test of
    # learning uses per-utterance normalisation, where the encoder has to learn the shape.
    brain, hp, data = build(
        tone_corpus,
        tmp_path / "l",
        number_of_epochs=6,
        queue_size=8,
        noise_prob=0.0,
        reverb_prob=0.0,
        drop_freq_prob=0.0,
        drop_chunk_prob=0.0,
        eq_prob=0.0,
        feature_norm="sentence",
        feature_std_norm=False,
    )
    fit(brain, hp, data)
    steps = len(brain.losses)
    assert int(brain.modules.queue.filled) == 8
    assert int(brain.modules.queue.ptr) == (steps * 4) % 8
    per_epoch = steps // 6
    first, last = brain.losses[:per_epoch], brain.losses[-per_epoch:]
    assert sum(last) / per_epoch < sum(first) / per_epoch - 0.2
    history = open(os.path.join(hp["output_folder"], "history.jsonl")).read().splitlines()
    assert len(history) == 6 and '"train_acc"' in history[0]


def test_checkpoint_restores_queue_encoders_and_step(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "c", number_of_epochs=1)
    fit(brain, hp, data)
    saved = {
        name: {k: v.clone() for k, v in brain.modules[name].state_dict().items()}
        for name in ("queue", "embedding_model", "key_model")
    }
    step = brain.optimizer_step
    fresh, hp2, _ = build(tone_corpus, tmp_path / "c", number_of_epochs=1, seed=99)
    fresh.checkpointer.recover_if_possible()
    assert fresh.optimizer_step == step and hp2["epoch_counter"].current == 1
    for name, state in saved.items():
        for key, value in fresh.modules[name].state_dict().items():
            assert torch.equal(value, state[key]), (name, key)


def test_interrupted_run_resumes_with_identical_losses(tone_corpus, tmp_path):
    full, hp, data = build(tone_corpus, tmp_path / "full", number_of_epochs=3)
    fit(full, hp, data)
    part, hp1, data1 = build(tone_corpus, tmp_path / "part", number_of_epochs=1)
    fit(part, hp1, data1)
    resumed, hp2, data2 = build(tone_corpus, tmp_path / "part", number_of_epochs=3)
    fit(resumed, hp2, data2)
    assert len(part.losses) + len(resumed.losses) == len(full.losses)
    assert part.losses + resumed.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)
    for key, value in resumed.modules.queue.state_dict().items():
        assert torch.allclose(value, full.modules.queue.state_dict()[key], atol=1e-5)


def test_start_up_errors(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "e", batch_size=4, queue_size=2)
    with pytest.raises(ValueError, match="queue_size=2"):
        fit(brain, hp, data)
    brain, hp, data = build(tone_corpus, tmp_path / "e2", batch_size=64, queue_size=128)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        fit(brain, hp, data)


class NaNBrain(RecordingBrain):
    """Returns a NaN loss at the steps listed in ``nan_steps`` (all when None)."""

    nan_steps = {2}

    def compute_objectives(self, outputs, batch, stage):
        loss = super().compute_objectives(outputs, batch, stage)
        if stage == sb.Stage.TRAIN and (self.nan_steps is None or self.step in self.nan_steps):
            return loss * float("nan")
        return loss

    def fit_batch(self, batch):
        before = (
            int(self.modules.queue.ptr),
            {k: v.clone() for k, v in self.modules.embedding_model.state_dict().items()},
            {k: v.clone() for k, v in self.modules.key_model.state_dict().items()},
        )
        loss = super().fit_batch(batch)
        self.snapshots = getattr(self, "snapshots", []) + [(self.step, before)]
        return loss


def test_nan_loss_skips_the_step_without_side_effects(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "n", brain_class=NaNBrain, number_of_epochs=1)
    fit(brain, hp, data)
    assert brain.skipped_steps == 1
    step, (ptr, query, key) = brain.snapshots[1]
    assert step == 2
    after_ptr, after_query, after_key = brain.snapshots[2][1]  # state before step 3 = after step 2
    assert after_ptr == ptr
    assert all(torch.equal(after_query[k], v) for k, v in query.items())
    assert all(torch.equal(after_key[k], v) for k, v in key.items())
    assert int(brain.modules.queue.ptr) == ((len(brain.snapshots) - 1) * 4) % 12


def test_nan_patience_stops_with_a_clear_message(tone_corpus, tmp_path):
    NaNBrain.nan_steps = None
    try:
        brain, hp, data = build(
            tone_corpus,
            tmp_path / "p",
            brain_class=NaNBrain,
            run_opts={"nonfinite_patience": 2},
            number_of_epochs=1,
        )
        with pytest.raises(RuntimeError, match="3 non-finite losses in a row"):
            fit(brain, hp, data)
        assert brain.skipped_steps == 3
    finally:
        NaNBrain.nan_steps = {2}


def test_bf16_training_keeps_the_queue_in_float32(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "b", run_opts={"precision": "bf16"}, number_of_epochs=1)
    fit(brain, hp, data)
    assert brain.modules.queue.keys.dtype == torch.float32
    assert all(math.isfinite(v) for v in brain.losses)
    assert int(brain.modules.queue.filled) == 12


def test_checkpoint_of_another_architecture_is_refused(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "arch", number_of_epochs=1)
    fit(brain, hp, data)
    other, hp2, data2 = build(tone_corpus, tmp_path / "arch", number_of_epochs=2, channels=24)
    with pytest.raises(ValueError, match="another architecture"):
        fit(other, hp2, data2)


def test_crop_longer_than_every_utterance_is_refused(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "crop", crop_seconds=3.0)
    with pytest.raises(ValueError, match="longer than every training utterance"):
        fit(brain, hp, data)


def test_encoder_with_a_bad_output_is_refused(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "enc", number_of_epochs=1)
    inner = brain.modules.embedding_model
    brain.modules.embedding_model = torch.nn.Module()
    brain.modules.embedding_model.inner = inner  # a submodule: eval() reaches it
    brain.modules.embedding_model.forward = lambda x, lens=None: (inner(x, lens),)
    with pytest.raises(TypeError, match="got tuple"):
        fit(brain, hp, data)
