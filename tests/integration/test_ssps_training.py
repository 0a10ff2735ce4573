"""SSPSBrain (moco_ssps.yaml): reference embeddings of clean crops, positives of other
utterances, positive quality reported, exact resume (issue 25)."""

import json
import os

import pytest
import speechbrain as sb
import torch
from test_moco_brain import ROOT, build, fit

from speechbrain_moco.dataio.datasets import stack_views
from speechbrain_moco.training import SSPSBrain

YAML = os.path.join(ROOT, "recipes", "Folder", "MoCo", "hparams", "moco_ssps.yaml")
SSPS = {"ssps_epochs": 2, "ssps_cluster_size": 3, "ssps_queue_size": 12}


class RecordingSSPS(SSPSBrain):
    """Records every step's loss, and what each reference pass saw."""

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        self.losses = getattr(self, "losses", []) + [float(loss.detach())]

    def reference(self, wavs, lengths):
        modes = []
        hook = self.modules.embedding_model.register_forward_pre_hook(lambda m, _: modes.append(m.training))
        try:
            out = super().reference(wavs, lengths)
        finally:
            hook.remove()
        self.seen = getattr(self, "seen", []) + [(wavs.clone(), modes, out.clone())]
        return out

    def compute_forward(self, batch, stage):
        if stage == sb.Stage.TRAIN:
            self.clean_view1 = stack_views(batch)[0][: len(batch.id)].clone()
        return super().compute_forward(batch, stage)


def ssps_run(corpus, out, **kw):
    opts = dict(SSPS, number_of_epochs=3)
    opts.update(kw)
    return build(corpus, out, brain_class=RecordingSSPS, yaml=YAML, **opts)


def test_ssps_clusters_reference_embeddings_of_clean_crops_and_reports_positives(tone_corpus, tmp_path):
    brain, hp, data = ssps_run(tone_corpus, tmp_path / "s")
    assert hp["ssps_start_epoch"] == 2 and "ssps" in hp["modules"]
    fit(brain, hp, data)
    ssps = brain.modules.ssps
    assert ssps.reference.shape == (len(data["train"]), hp["emb_dim"]) and bool(ssps.written.all())
    assert int(ssps.clustered_epoch) == 3
    # the reference pass saw the query encoder in eval() mode on the un-augmented crops (the
    # augmentation of this yaml changes every row), and its output is what the memory holds
    wavs, modes, _ = brain.seen[-1]
    assert modes == [False] and torch.equal(wavs, brain.clean_view1)
    rows = [json.loads(line) for line in open(tmp_path / "s" / "history.jsonl")]
    assert "ssps_coverage" not in rows[0]  # epoch 1: plain MoCo, the reference memory fills
    for row in rows[1:]:
        assert 0.0 < row["ssps_coverage"] <= 1.0
        assert 0.0 <= row["ssps_same_speaker"] <= 1.0  # the manifest has speaker ids: reported
    # the reference memory is not the momentum keys (another encoder, no augmentation)
    keys = ssps.pos_keys[ssps.pos_slots >= 0]
    refs = ssps.reference[ssps.pos_slots[ssps.pos_slots >= 0]]
    assert not torch.allclose(keys, refs, atol=1e-3)


def test_ssps_resume_gives_identical_losses_memories_and_clusters(tone_corpus, tmp_path):
    full, hp, data = ssps_run(tone_corpus, tmp_path / "full")
    fit(full, hp, data)
    part, hp1, data1 = ssps_run(tone_corpus, tmp_path / "part", number_of_epochs=2, ssps_epochs=1)
    assert hp1["ssps_start_epoch"] == 2  # the same schedule of SSPS epochs as the full run
    fit(part, hp1, data1)
    resumed, hp2, data2 = ssps_run(tone_corpus, tmp_path / "part")
    fit(resumed, hp2, data2)
    assert part.losses + resumed.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)
    for name, value in full.modules.ssps.state_dict().items():
        assert torch.allclose(resumed.modules.ssps.state_dict()[name].float(), value.float(), atol=1e-5), name


def test_a_resumed_ssps_memory_of_another_corpus_is_refused(tone_corpus, tmp_path):
    brain, hp, data = ssps_run(tone_corpus, tmp_path / "m", number_of_epochs=1)
    fit(brain, hp, data)
    other, hp2, data2 = ssps_run(tone_corpus, tmp_path / "m", number_of_epochs=2, valid_ratio=0.3)
    with pytest.raises(ValueError, match="SSPS memory holds 32 utterances"):
        fit(other, hp2, data2)


def test_a_resumed_ssps_memory_of_other_utterances_is_refused(tone_corpus, tmp_path):
    """The same number of utterances in another order would map memory rows to the wrong ones."""
    brain, hp, data = ssps_run(tone_corpus, tmp_path / "f", number_of_epochs=1)
    fit(brain, hp, data)
    other, hp2, data2 = ssps_run(tone_corpus, tmp_path / "f", number_of_epochs=2, seed=11)
    assert len(data2["train"]) == len(data["train"])  # another split of the same size
    with pytest.raises(ValueError, match="lists other utterances"):
        fit(other, hp2, data2)


def test_plain_moco_yamls_hold_no_ssps_and_no_base_class_names_it():
    import glob

    for path in glob.glob(os.path.join(ROOT, "recipes", "*", "MoCo", "hparams", "*.yaml")) + glob.glob(
        os.path.join(ROOT, "templates", "*", "*.yaml")
    ):
        if not path.endswith("_ssps.yaml"):
            assert "ssps" not in open(path).read(), path
    for module in ("moco_brain.py", "embedding_brain.py", "speaker_brain.py", "scoring.py", "steps.py"):
        text = open(os.path.join(ROOT, "speechbrain_moco", "training", module)).read()
        assert ".ssps" not in text and '"ssps"' not in text and "ssps_" not in text, module
