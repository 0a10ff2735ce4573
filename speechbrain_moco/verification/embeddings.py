"""Speaker embeddings of utterances: a trained run's encoder as an embedding function,
batched extraction over a manifest, crop averaging, and an on-disk cache."""

import os

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from speechbrain_moco.encoder import embed

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


def cached_embeddings(data, embed_fn, cache_path, cache_key, device, batch_size, progress):
    """Embeddings of ``data``, reused from ``cache_path`` when made by the same model."""
    if os.path.isfile(cache_path):
        cached = torch.load(cache_path, map_location="cpu", weights_only=False)
        if cached.get("key") == cache_key and set(data.data_ids) <= set(cached["ids"]):
            logger.info("reusing cached embeddings %s", cache_path)
            return cached["ids"], cached["embeddings"]
    ids, emb = extract_embeddings(data, embed_fn, device, batch_size, progress)
    save_embeddings(cache_path, ids, emb, key=cache_key)
    return ids, emb


def load_trained_encoder(run_folder, device="cpu", average_last=1, crop_seconds=None):
    """A training run's front-end and query encoder as an embedding function.

    Reads ``<run_folder>/hyperparams.yaml`` (written by every training recipe) and
    loads ``embedding_model`` and ``mean_var_norm`` from the latest checkpoint in
    ``save/``, or the encoder averaged over the last ``average_last`` end-of-epoch
    checkpoints (SpeechBrain's ``average_checkpoints``). With ``crop_seconds`` each
    utterance is embedded as the mean of its fixed-length crops.

    Returns
    -------
    embed_fn : callable
        ``(wavs, relative_lengths) -> (B, D)`` in eval mode on ``device``; its
        ``checkpoint`` attribute identifies the weights (a cache key).
    train_hparams : dict
        The run's hyperparameters, loaded.
    """
    hp_path = os.path.join(run_folder, "hyperparams.yaml")
    if not os.path.isfile(hp_path):
        raise FileNotFoundError(f"{hp_path} not found: is {run_folder} a training --output_folder?")
    with open(hp_path, encoding="utf-8") as fin:
        train_hp = load_hyperpyyaml(
            fin,
            {
                "output_folder": run_folder,
                "data_folder": None,
                "noise_annotation": None,
                "rir_annotation": None,
            },
        )
    encoder, norm = train_hp["embedding_model"], train_hp["mean_var_norm"]
    ckpt = sb.utils.checkpoints.Checkpointer(
        os.path.join(run_folder, "save"), recoverables={"embedding_model": encoder, "mean_var_norm": norm}
    )
    latest = ckpt.find_checkpoint()
    if latest is None:
        raise FileNotFoundError(f"no checkpoint found in {run_folder}/save")
    missing = [k for k in ("embedding_model", "mean_var_norm") if k not in latest.paramfiles]
    if missing:
        raise FileNotFoundError(f"{latest.path} has no {' or '.join(k + '.ckpt' for k in missing)}")
    loaded = ckpt.recover_if_possible()
    check_norm_loaded(norm, loaded.path)
    if average_last > 1:
        last = ckpt.find_checkpoints(
            max_num_checkpoints=average_last, ckpt_predicate=lambda c: c.meta.get("end-of-epoch", True)
        )
        encoder.load_state_dict(sb.utils.checkpoints.average_checkpoints(last, "embedding_model"))
        logger.info("averaged %d checkpoints of %s", len(last), run_folder)
    feats, norm = train_hp["compute_features"].to(device), norm.to(device).eval()
    encoder = encoder.to(device).eval()

    def full(wavs, lens):
        return embed(encoder, norm(feats(wavs), lens), lens)

    fn = full if crop_seconds is None else crop_average(full, int(crop_seconds * train_hp["sample_rate"]))
    fn.checkpoint = f"{loaded.path}|avg{average_last}|crop{crop_seconds}"
    return fn, train_hp


def check_norm_loaded(norm, where):
    """Raise unless a ``global`` InputNormalization holds statistics.

    A ``feature_norm: global`` run saves its corpus mean/std in the checkpoint
    (``mean_var_norm.ckpt``); without them every feature would be garbage.
    """
    if norm.norm_type == "global" and not norm.count:
        raise ValueError(
            f"{where}: feature_norm is global but the checkpoint has no "
            "mean_var_norm statistics (mean_var_norm.ckpt)"
        )
    return norm


def crop_average(embed_fn, crop):
    """Embed each utterance as the mean of its consecutive ``crop``-sample crops.

    A remainder shorter than half a crop is dropped; an utterance shorter than
    one crop is embedded whole.
    """

    def fn(wavs, lens):
        out = []
        for wav, rel in zip(wavs, lens):
            wav = wav[: int(round(float(rel) * wavs.shape[1]))]
            n = max(1, wav.numel() // crop + (wav.numel() % crop >= crop // 2))
            crops = [wav[i * crop : (i + 1) * crop] for i in range(n)] if wav.numel() > crop else [wav]
            batch = torch.nn.utils.rnn.pad_sequence(crops, batch_first=True)
            rel_lens = torch.tensor([c.numel() / batch.shape[1] for c in crops], device=wavs.device)
            out.append(embed_fn(batch, rel_lens).mean(dim=0))
        return torch.stack(out)

    return fn
