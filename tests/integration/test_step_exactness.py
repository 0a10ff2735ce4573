"""Side-effect-free skipped steps, exact schedules and resume (issue 18, defects 3, 4, 8, 9).

A tiny MoCoBrain from the Folder recipe's yaml (``build`` / ``fit`` of test_moco_brain).
"""

import os

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from conftest import write_tone_corpus
from test_moco_brain import NaNBrain, RecordingBrain, build, fit


class NaNAudioBrain(RecordingBrain):
    """Step 2's training audio is NaN (a corrupt batch), and the normaliser is recorded."""

    def features(self, wavs, lengths, stage):
        if stage == sb.Stage.TRAIN and self.step == 2:
            wavs = wavs * float("nan")
        return super().features(wavs, lengths, stage)

    def fit_batch(self, batch):
        loss = super().fit_batch(batch)
        norm = self.modules.mean_var_norm
        self.norms = getattr(self, "norms", []) + [
            (norm.count, norm.glob_mean.clone(), norm.glob_std.clone())
        ]
        return loss


def test_a_nan_batch_leaves_the_global_normaliser_as_it_was(tone_corpus, tmp_path):
    """SpeechBrain's InputNormalization keeps its statistics as plain attributes, which the
    buffer rollback missed: one NaN batch poisoned the normaliser and every later step."""
    brain, hp, data = build(tone_corpus, tmp_path / "n", brain_class=NaNAudioBrain, number_of_epochs=1)
    assert hp["feature_norm"] == "global"
    fit(brain, hp, data)
    assert brain.skipped_steps == 1
    (c1, m1, s1), (c2, m2, s2), (c3, m3, _) = brain.norms[:3]
    assert c2 == c1 and torch.equal(m2, m1) and torch.equal(s2, s1)  # step 2 left no trace
    assert c3 > c2 and torch.isfinite(m3).all()  # the next finite batch moves it, finitely
    assert all(np.isfinite(brain.losses))
    feats = brain.features(torch.randn(2, 8000), torch.ones(2), sb.Stage.TEST)
    assert torch.isfinite(feats).all()


def test_a_float_wav_holding_nan_is_skipped_with_a_named_report(tmp_path):
    corpus = write_tone_corpus(str(tmp_path / "c"), n_speakers=6, n_utts=6, seed=2)
    bad = np.full(16000, 0.1, dtype=np.float32)
    bad[100:200] = np.nan
    sf.write(os.path.join(corpus, "spk0", "nan.wav"), bad, 16000, subtype="FLOAT")
    brain, hp, data = build(corpus, tmp_path / "o", number_of_epochs=1, valid_ratio=0.0)
    fit(brain, hp, data)
    report = (tmp_path / "o" / "skipped_audio.txt").read_text().splitlines()
    assert len(report) == 1 and report[0].startswith("spk0/nan\t") and "NaN or infinite" in report[0]
    assert brain.skipped_steps == 0 and all(np.isfinite(brain.losses))


def test_utterances_shorter_than_a_crop_are_left_out_listed_and_counted(tmp_path, caplog):
    """Their two views would share samples (the crop is tiled from the utterance)."""
    corpus = write_tone_corpus(str(tmp_path / "c"), n_speakers=6, n_utts=6, seed=4)
    for spk, seconds in (("spk1", 0.3), ("spk2", 0.45)):
        sf.write(
            os.path.join(corpus, spk, "short.wav"), np.zeros(int(seconds * 16000), np.float32) + 0.1, 16000
        )
    with caplog.at_level("WARNING"):
        brain, hp, data = build(corpus, tmp_path / "o", number_of_epochs=1, valid_ratio=0.0)
    listed = (tmp_path / "o" / "short_utterances.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == ["spk1/short", "spk2/short"]
    assert "2 utterance(s) shorter than 0.50 s left out of MoCo training" in caplog.text
    assert len(data["train"]) == 36  # 38 files, the 2 short ones out
    # a threshold of its own: min_utterance_seconds below the crop keeps the 0.45 s one
    brain, hp, data = build(
        corpus, tmp_path / "o2", number_of_epochs=1, valid_ratio=0.0, min_utterance_seconds=0.4
    )
    assert len(data["train"]) == 37


def test_total_steps_counts_the_optimiser_steps_with_gradient_accumulation(tone_corpus, tmp_path):
    """8 micro-batches an epoch, accumulation 3: 2 steps an epoch (the last 2 make none)."""
    brain, hp, data = build(
        tone_corpus, tmp_path / "g", run_opts={"grad_accumulation_factor": 3}, number_of_epochs=2
    )
    fit(brain, hp, data)
    assert brain.steps_per_epoch == 8
    assert brain.optimizer_step == brain.total_steps() == 4


class StepCountingNaNBrain(NaNBrain):
    def fit_batch(self, batch):
        loss = super().fit_batch(batch)
        self.steps_after = getattr(self, "steps_after", []) + [self.optimizer_step]
        return loss


def test_a_skipped_micro_batch_keeps_the_gradients_of_its_window(tone_corpus, tmp_path):
    """Accumulation 2, the second micro-batch of the first window NaN: the window still steps
    with the first micro-batch's gradients (they were zeroed, and the step lost)."""
    brain, hp, data = build(
        tone_corpus,
        tmp_path / "s",
        brain_class=StepCountingNaNBrain,
        run_opts={"grad_accumulation_factor": 2},
        number_of_epochs=1,
    )
    fit(brain, hp, data)
    assert brain.skipped_steps == 1
    assert brain.steps_after[:4] == [0, 1, 1, 2]
    _, (_, query_before_2, _) = brain.snapshots[1]
    _, (_, query_after_2, _) = brain.snapshots[2]
    assert any(not torch.equal(query_after_2[k], v) for k, v in query_before_2.items())


def test_resume_after_an_end_of_epoch_checkpoint_without_validation_is_exact(tone_corpus, tmp_path):
    """No validation set: the checkpoint is written after training, with step 0 for the next
    epoch (it recorded the last step, after which the augmentation seeds differed)."""
    none = {"valid_annotation": None}
    full, hp, data = build(tone_corpus, tmp_path / "full", number_of_epochs=2, **none)
    assert data["valid"] is None
    fit(full, hp, data)
    part, hp1, data1 = build(tone_corpus, tmp_path / "part", number_of_epochs=1, **none)
    fit(part, hp1, data1)
    resumed, hp2, data2 = build(tone_corpus, tmp_path / "part", number_of_epochs=2, **none)
    fit(resumed, hp2, data2)
    assert part.losses + resumed.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)


def test_augmentation_runs_in_float32_under_bf16_autocast(tone_corpus, tmp_path):
    brain, hp, data = build(
        tone_corpus, tmp_path / "b", number_of_epochs=1, noise_prob=1.0, drop_freq_prob=1.0
    )
    wavs = torch.randn(4, 8000)
    lengths = torch.ones(4)
    reference = brain.augment(wavs, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = brain.augment(wavs, lengths)
    assert mixed.dtype == torch.float32
    assert torch.equal(mixed, reference)


def test_the_recipe_brain_splits_batch_norm_and_keeps_plain_checkpoints(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "bn", number_of_epochs=1)
    assert hp["bn_splits"] == 2
    for name in ("embedding_model", "key_model", "projector", "key_projector"):
        norms = [
            m for m in brain.modules[name].modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        assert all(type(m).__name__.startswith("Split") and m.num_splits == 2 for m in norms), name
        assert norms or name.endswith("projector"), name  # no head by default (proj_hidden: null)
    head, _, _ = build(tone_corpus, tmp_path / "bnh", number_of_epochs=1, proj_hidden=32)
    assert any(type(m).__name__.startswith("Split") for m in head.modules.key_projector.modules())
    fresh, _, _ = build(tone_corpus, tmp_path / "bn1", number_of_epochs=1, bn_splits=1)
    assert list(brain.modules.embedding_model.state_dict()) == list(
        fresh.modules.embedding_model.state_dict()
    )
    with pytest.raises(ValueError, match="bn_splits=3"):
        build(tone_corpus, tmp_path / "bn3", number_of_epochs=1, bn_splits=3)[0].check_setup(32, 4)


class ForwardRecordingBrain(RecordingBrain):
    def compute_forward(self, batch, stage):
        out = super().compute_forward(batch, stage)
        if stage == sb.Stage.TRAIN:
            self.shapes = getattr(self, "shapes", []) + [tuple(out["logits"].shape)]
        return out

    def augment(self, wavs, lengths):
        self.view_lengths = getattr(self, "view_lengths", []) + [wavs.shape[1]]
        return super().augment(wavs, lengths)


def test_symmetric_loss_scores_both_directions_and_enqueues_one_key_per_pair(tone_corpus, tmp_path):
    brain, hp, data = build(
        tone_corpus,
        tmp_path / "sym",
        brain_class=ForwardRecordingBrain,
        number_of_epochs=1,
        symmetric_loss=True,
    )
    fit(brain, hp, data)
    assert set(brain.shapes) == {(8, 13)}  # 2 x 4 queries, positive + 12 queue negatives
    assert int(brain.modules.queue.ptr) == (len(brain.losses) * 4) % 12
    assert all(np.isfinite(brain.losses))


def test_random_crop_length_per_step_is_reproducible_and_in_range(tone_corpus, tmp_path):
    lengths = []
    for run in ("a", "b"):
        brain, hp, data = build(
            tone_corpus,
            tmp_path / run,
            brain_class=ForwardRecordingBrain,
            number_of_epochs=1,
            crop_seconds=0.8,
            crop_seconds_min=0.4,
        )
        fit(brain, hp, data)
        lengths.append(brain.view_lengths[1:])  # [0]: the start-up encoder check
    assert lengths[0] == lengths[1] and len(set(lengths[0])) > 2
    assert all(0.4 * 16000 <= n <= 0.8 * 16000 for n in lengths[0])


def test_an_accumulation_wider_than_the_epoch_is_refused(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "w", run_opts={"grad_accumulation_factor": 9})
    with pytest.raises(ValueError, match="no optimiser step would ever run"):
        fit(brain, hp, data)
