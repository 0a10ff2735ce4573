"""Embedding extraction never pads: an utterance's embedding does not depend on its batch."""

import numpy as np
import soundfile as sf
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from speechbrain_moco.dataio import manifest_row, utterance_dataset, write_manifest
from speechbrain_moco.encoder import embed
from speechbrain_moco.verification import extract_embeddings
from speechbrain_moco.verification.embeddings import equal_length_batches


def test_equal_length_batches_group_only_equal_lengths():
    lengths = [5, 3, 5, 5, 4, 3]
    batches = equal_length_batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in batches)
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)


def test_an_embedding_does_not_depend_on_what_it_is_batched_with(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate([8000, 12000, 12000, 16000, 9000, 12000]):
        sf.write(tmp_path / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
        rows.append(manifest_row(f"u{i}.wav", "s", 0, n, 16000))
    write_manifest(rows, tmp_path / "m.csv")
    torch.manual_seed(0)
    feats, encoder = Fbank(n_mels=24), ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], lin_neurons=8).eval()

    def embed_fn(wavs, lens):
        return embed(encoder, feats(wavs), lens)

    data = utterance_dataset(tmp_path / "m.csv", str(tmp_path), 16000)
    ids1, one = extract_embeddings(data, embed_fn, batch_size=1, progress=False)
    ids8, eight = extract_embeddings(data, embed_fn, batch_size=8, progress=False)
    by_id = dict(zip(ids8, eight))
    for uid, emb in zip(ids1, one):
        torch.testing.assert_close(by_id[uid], emb, rtol=0, atol=1e-5)
    # what padding would have done: the short utterance embedded in a padded batch differs
    wavs = torch.zeros(2, 16000)
    wavs[0, :8000] = torch.from_numpy(sf.read(tmp_path / "u0.wav", dtype="float32")[0])
    padded = embed_fn(wavs, torch.tensor([0.5, 1.0]))[0]
    assert (padded - by_id["u0"]).abs().max() > 1e-4
