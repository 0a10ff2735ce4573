"""SSPS inside MoCoBrain: positives from other utterances, exact resume (issue 19)."""

import json

import pytest
import torch
from test_moco_brain import build, fit

SSPS = {"ssps_start_epoch": 2, "ssps_cluster_size": 3, "ssps_neighbours": 0}


def test_ssps_epochs_draw_other_utterances_and_log_their_coverage(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "s", number_of_epochs=3, **SSPS)
    fit(brain, hp, data)
    ssps = brain.modules.ssps
    assert ssps.memory.shape[0] == len(data["train"]) == 32 and bool(ssps.written.all())
    assert int(ssps.clustered_epoch) == 3
    rows = [json.loads(line) for line in open(tmp_path / "s" / "history.jsonl")]
    assert "ssps_coverage" not in rows[0]  # epoch 1: plain MoCo, the memory fills
    assert all(0.5 < r["ssps_coverage"] <= 1.0 for r in rows[1:])  # 32 rows in ~11 clusters
    # the drawn positive of an utterance is another one of its pseudo-class
    slots = torch.arange(32)
    drawn = ssps.sample(slots, torch.Generator().manual_seed(0))
    ok = drawn >= 0
    assert (drawn[ok] != slots[ok]).all() and torch.equal(ssps.assign[drawn[ok]], ssps.assign[slots[ok]])


def test_ssps_resume_gives_identical_losses_memory_and_clusters(tone_corpus, tmp_path):
    full, hp, data = build(tone_corpus, tmp_path / "full", number_of_epochs=3, **SSPS)
    fit(full, hp, data)
    part, hp1, data1 = build(tone_corpus, tmp_path / "part", number_of_epochs=2, **SSPS)
    fit(part, hp1, data1)
    resumed, hp2, data2 = build(tone_corpus, tmp_path / "part", number_of_epochs=3, **SSPS)
    fit(resumed, hp2, data2)
    assert part.losses + resumed.losses == pytest.approx(full.losses, rel=1e-5, abs=1e-6)
    for name, value in full.modules.ssps.state_dict().items():
        assert torch.allclose(resumed.modules.ssps.state_dict()[name].float(), value.float(), atol=1e-5), name


def test_a_resumed_ssps_memory_of_another_corpus_is_refused(tone_corpus, tmp_path):
    brain, hp, data = build(tone_corpus, tmp_path / "m", number_of_epochs=1, **SSPS)
    fit(brain, hp, data)
    other, hp2, data2 = build(tone_corpus, tmp_path / "m", number_of_epochs=2, valid_ratio=0.3, **SSPS)
    with pytest.raises(ValueError, match="SSPS memory holds 32 utterances"):
        fit(other, hp2, data2)


def test_a_resumed_ssps_memory_of_other_utterances_is_refused(tone_corpus, tmp_path):
    """The same number of utterances in another order would map memory rows to the wrong ones."""
    brain, hp, data = build(tone_corpus, tmp_path / "f", number_of_epochs=1, **SSPS)
    fit(brain, hp, data)
    other, hp2, data2 = build(tone_corpus, tmp_path / "f", number_of_epochs=2, seed=11, **SSPS)
    assert len(data2["train"]) == len(data["train"])  # another split of the same size
    with pytest.raises(ValueError, match="lists other utterances"):
        fit(other, hp2, data2)
