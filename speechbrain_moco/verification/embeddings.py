"""Speaker embeddings of utterances: a trained run's encoder as an embedding function,
batched extraction over a manifest, crop averaging, and an on-disk cache."""

import os
import random

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from speechbrain_moco.dataio.bad_audio import REPORT_NAME, usable_rows
from speechbrain_moco.dataio.datasets import utterance_dataset
from speechbrain_moco.dataio.manifest import read_manifest, write_manifest
from speechbrain_moco.encoder import embed
from speechbrain_moco.run_folder import read_run_info, relocated_yaml_text, require_path, run_status

logger = get_logger(__name__)


def equal_length_batches(lengths, batch_size):
    """Batches of indices, each of up to ``batch_size`` utterances of one length.

    Padding leaks into an embedding (a convolution sees the zeros at the edge, the
    features of silence are normalised like speech), so the extraction never pads:
    the same utterance gets the same embedding whatever it is batched with, and the
    one SpeechBrain's inference classes compute from the file alone. Utterances are
    taken shortest first.

    Example
    -------
    >>> equal_length_batches([3, 5, 3, 3, 5, 4], batch_size=2)
    [[0, 2], [3], [5], [1, 4]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = []
    for i in order:
        if batches and len(batches[-1]) < batch_size and lengths[batches[-1][0]] == lengths[i]:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def zero_padded(rows):
    """``(batch, relative lengths)`` of 1-D waveforms (or ``(frames, F)`` features), padded
    with zeros at their end to the longest.

    Example
    -------
    >>> batch, lengths = zero_padded([torch.ones(4), torch.ones(2)])
    >>> batch.tolist(), lengths.tolist()
    ([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], [1.0, 0.5])
    """
    batch = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    lengths = torch.tensor([r.shape[0] / batch.shape[1] for r in rows], device=batch.device)
    return batch, lengths


@torch.no_grad()
def extract_embeddings(dataset, embed_fn, device="cpu", batch_size=8, progress=True):
    """Embed every utterance of ``dataset`` (a manifest dataset with ``id`` and ``sig``).

    Utterances are batched only with others of exactly their length
    (:func:`equal_length_batches`), never padded; ``embed_fn(wavs, relative_lengths)
    -> (B, D)``.

    Returns
    -------
    ids : list of str
    embeddings : torch.Tensor
        (N, D) float32 on the CPU, in the order of ``ids``.
    """
    rows = [dataset.data[uid] for uid in dataset.data_ids]
    lengths = [int(r["stop"]) - int(r["start"]) for r in rows]
    loader = sb.dataio.dataloader.make_dataloader(
        dataset, batch_sampler=equal_length_batches(lengths, batch_size), collate_fn=PaddedBatch
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
    tmp = f"{path}.tmp"  # written whole, then renamed: a killed run leaves no half file
    torch.save({"ids": list(ids), "embeddings": embeddings, "key": key}, tmp)
    os.replace(tmp, path)


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


def training_embeddings(
    run_folder,
    embed_fn,
    cache_path,
    device="cpu",
    batch_size=8,
    max_utterances=3000,
    manifest=None,
    data_folder=None,
):
    """Embeddings of (a seeded subset of at most ``max_utterances``) training utterances.

    No label is read. The manifest is the run's own training manifest
    (``run_info.json``) unless ``manifest`` / ``data_folder`` name another one: the
    cohort of score normalisation, the data of label-free PLDA, the mean of cosine mean
    subtraction and of an exported model's embedding normaliser. Cached in
    ``cache_path`` under ``embed_fn.checkpoint``. Unusable audio is left out and named in
    ``skipped_audio.txt`` beside the cache.
    """
    if manifest is None:
        info = read_run_info(run_folder)
        how = "give the training utterances as --cohort_annotation=CSV --cohort_data_folder=ROOT"
        manifest = require_path(info, "train_annotation", how)
        data_folder = require_path(
            info, "data_folder", "give the corpus root as --cohort_data_folder=ROOT (or --data_folder)"
        )
    rows = read_manifest(manifest)
    if len(rows) > max_utterances:
        keep = set(random.Random(0).sample([r["ID"] for r in rows], max_utterances))
        rows = [r for r in rows if r["ID"] in keep]
    # unusable audio is left out and named beside the cache (skipped_audio.txt)
    folder = os.path.dirname(os.path.abspath(cache_path))
    rows, _ = usable_rows(
        rows, data_folder, embed_fn.sample_rate, os.path.join(folder, REPORT_NAME), "training utterances"
    )
    usable = os.path.join(folder, "training_utterances.csv")
    write_manifest(rows, usable)
    data = utterance_dataset(usable, data_folder, embed_fn.sample_rate)
    return cached_embeddings(data, embed_fn, cache_path, embed_fn.checkpoint, device, batch_size, True)[1]


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
    # built from the run's folder as it is now (a moved run creates nothing at its old place)
    train_hp = load_hyperpyyaml(
        relocated_yaml_text(run_folder),
        {"data_folder": None, "noise_annotation": None, "rir_annotation": None},
    )
    encoder, norm = train_hp["embedding_model"], train_hp["mean_var_norm"]
    ckpt = sb.utils.checkpoints.Checkpointer(
        os.path.join(run_folder, "save"), recoverables={"embedding_model": encoder, "mean_var_norm": norm}
    )
    latest = ckpt.find_checkpoint()
    if latest is None:
        status = run_status(run_folder)
        why = f" (its status.json says {status}: see its log.txt)" if status else ""
        raise FileNotFoundError(f"no checkpoint found in {run_folder}/save{why}")
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
    fn.checkpoint = f"{loaded.path}|avg{average_last}|crop{crop_seconds}|unpadded"
    fn.sample_rate = train_hp["sample_rate"]
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

    A remainder shorter than half a crop is dropped (a longer one is a crop of its
    own, embedded unpadded); an utterance shorter than one crop is embedded whole.
    """

    def fn(wavs, lens):
        out = []
        for wav, rel in zip(wavs, lens):
            wav = wav[: int(round(float(rel) * wavs.shape[1]))]
            if wav.numel() <= crop:
                out.append(embed_fn(wav[None], torch.ones(1, device=wavs.device))[0])
                continue
            n_full, rest = divmod(wav.numel(), crop)
            full = wav[: n_full * crop].view(n_full, crop)
            parts = [embed_fn(full, torch.ones(n_full, device=wavs.device))]
            if rest >= crop // 2:
                parts.append(embed_fn(wav[n_full * crop :][None], torch.ones(1, device=wavs.device)))
            out.append(torch.cat(parts).mean(dim=0))
        return torch.stack(out)

    return fn
