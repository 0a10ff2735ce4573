"""Batched embedding extraction over a manifest, with an on-disk cache."""

import os

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

logger = get_logger(__name__)


@torch.no_grad()
def extract_embeddings(dataset, embed_fn, device="cpu", batch_size=8, progress=True):
    """Embed every utterance of ``dataset`` (items with ``id`` and ``sig``).

    Utterances are batched by similar length (sorted by ``duration``) to keep
    padding small; ``embed_fn(wavs, relative_lengths) -> (B, D)``.

    Returns
    -------
    ids : list of str
    embeddings : torch.Tensor
        (N, D) float32 on the CPU, in the order of ``ids``.
    """
    if "duration" in dataset.data[dataset.data_ids[0]]:
        dataset = dataset.filtered_sorted(sort_key="duration")
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_size=batch_size, collate_fn=PaddedBatch, shuffle=False
    )
    ids, chunks = [], []
    for batch in tqdm(loader, disable=not progress, desc="embeddings"):
        wavs, lens = batch.sig
        emb = embed_fn(wavs.to(device), lens.to(device))
        ids.extend(batch.id)
        chunks.append(emb.float().cpu())
    return ids, torch.cat(chunks)


def save_embeddings(path, ids, embeddings, key=None):
    """Cache ``{"ids", "embeddings", "key"}`` to ``path`` (torch format).

    ``key`` identifies the model that made them (e.g. its checkpoint path).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"ids": list(ids), "embeddings": embeddings, "key": key}, path)


def load_embeddings(path):
    """Load a cache written by ``save_embeddings`` as a dict id -> tensor."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    return dict(zip(data["ids"], data["embeddings"]))
