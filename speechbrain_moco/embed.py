"""Embeddings of every file of a folder or a list, with an exported model.

``python -m speechbrain_moco.embed --model DIR --input LIST_OR_FOLDER --output OUT
[--runtime torch|onnx] [--kaldi] [--batch_size 16] [--fast]``

``INPUT`` is a folder (every audio file below it; a file's id is its path relative to the
folder, without extension) or a text list: one ``path`` a line, or ``id path`` (Kaldi's
``wav.scp``; relative paths are relative to the list's folder). ``OUT`` gets
``embeddings.npy`` (N, D) float32 and ``index.txt`` (``id<TAB>path`` of each row, in input
order), with ``--kaldi`` also ``embeddings.ark`` / ``embeddings.scp`` (written by
``kaldiio``), and ``skipped_audio.txt`` naming every file that is not usable audio
(unreadable, NaN/inf, empty, silent, another sample rate).

By default every embedding equals the model's embedding of that file alone (to float
rounding): files are batched only with files of exactly their length, never padded.
``--fast`` batches files of neighbouring lengths together instead. With ``--runtime torch``
and an ECAPA-TDNN or x-vector encoder the padding is made inert (each file's features cut to
its own frames, each convolution's end padding rewritten per row, masked pooling:
:mod:`speechbrain_moco.verification.inert_padding`), so the embeddings still equal each
file's own to float rounding; otherwise (``--runtime onnx``, other encoders) it is plain zero
padding, which is not exact (a warning says so). ``benchmarks/inference_speed.py`` measures
the speed and the deviation of both. Work is saved chunk by chunk in
``OUT/parts/``: an interrupted run continues where it stopped when run again with the same
command.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import soundfile as sf
import torch
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from speechbrain_moco.dataio.audio import find_audio_files
from speechbrain_moco.dataio.bad_audio import REPORT_NAME, append_report, load_usable
from speechbrain_moco.verification.embeddings import equal_length_batches, zero_padded

logger = get_logger(__name__)

CHUNK = 256  # files per saved part


def read_input(source):
    """``[(id, path)]`` of a folder or a list file (see the module docstring)."""
    if os.path.isdir(source):
        files = find_audio_files(source)
        entries = [(os.path.splitext(rel)[0], os.path.join(source, rel)) for rel in files]
    elif os.path.isfile(source):
        base, entries = os.path.dirname(os.path.abspath(source)), []
        with open(source, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) > 2:
                    raise ValueError(f"{source}:{lineno}: expected 'path' or 'id path', got {line.strip()!r}")
                path = fields[-1] if os.path.isabs(fields[-1]) else os.path.join(base, fields[-1])
                uid = fields[0] if len(fields) == 2 else os.path.splitext(fields[0])[0]
                entries.append((uid, path))
    else:
        raise FileNotFoundError(f"--input={source}: no such folder or list file")
    if not entries:
        raise ValueError(f"--input={source}: no audio file in it")
    seen = {}
    for uid, path in entries:
        if uid in seen:
            raise ValueError(f"--input={source}: id {uid!r} twice ({seen[uid]} and {path})")
        seen[uid] = path
    return entries


def plan(entries, fast, batch_size):
    """Batches (lists of entry indices): of one length (exact), or of neighbouring lengths."""
    lengths = []
    for _, path in entries:
        try:
            lengths.append(sf.info(path).frames)
        except Exception:  # unreadable: its own batch, where it is named and skipped
            lengths.append(-1)
    if not fast:
        return equal_length_batches(lengths, batch_size)
    order = sorted(range(len(entries)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def embed_chunk(entries, embed_fn, fast, batch_size, sample_rate, zero_padding=False):
    """``(ids, embeddings (n, D), skipped {id: reason})`` of a chunk of entries.

    ``fast``: batches of neighbouring lengths; their padding is made inert
    (:mod:`~speechbrain_moco.verification.inert_padding`) where ``embed_fn`` offers it
    (``embed_fn.embed_list``: the PyTorch runtime of an ECAPA-TDNN or x-vector) and
    ``zero_padding`` is not asked, else plain zero padding (not exact)."""
    inert = fast and not zero_padding and hasattr(embed_fn, "embed_list")
    out, skipped = {}, {}
    for batch in plan(entries, fast, batch_size):
        wavs, ids = [], []
        for i in batch:
            uid, path = entries[i]
            wav, problem = load_usable(path, sample_rate)
            if problem:
                skipped[uid] = f"{path}: {problem}"
            else:
                wavs.append(wav)
                ids.append(uid)
        if not wavs:
            continue
        if inert:
            for uid, e in zip(ids, torch.as_tensor(embed_fn.embed_list(wavs)).float()):
                out[uid] = e.numpy()
            continue
        emb = embed_fn(*zero_padded(wavs))
        for uid, e in zip(ids, torch.as_tensor(emb).float()):
            out[uid] = e.numpy()
    kept = [uid for uid, _ in entries if uid in out]
    dim = next(iter(out.values())).shape[0] if out else 0
    return kept, (np.stack([out[u] for u in kept]) if kept else np.zeros((0, dim), np.float32)), skipped


def run_embed(model, source, output, runtime="torch", batch_size=16, fast=False, kaldi=False, device="cpu"):
    """Embed every entry of ``source`` into ``output`` (see the module docstring); returns a
    summary dict."""
    from speechbrain_moco.verification.exported import load_exported

    entries = read_input(source)
    embed_fn = load_exported(model, runtime, device)
    if fast and not hasattr(embed_fn, "embed_list"):
        logger.warning(
            "--fast with --runtime %s%s: files of neighbouring lengths are zero-padded together, "
            "which is not exact (padding leaks into the embeddings); --runtime torch makes it inert "
            "for an ECAPA-TDNN or x-vector",
            runtime,
            "" if runtime == "onnx" else " and this encoder",
        )
    os.makedirs(os.path.join(output, "parts"), exist_ok=True)
    job = {
        "model": os.path.abspath(model),
        "model_key": embed_fn.checkpoint,
        "runtime": runtime,
        "fast": bool(fast),
        "inputs": hashlib.sha256("\n".join(f"{u}\t{p}" for u, p in entries).encode()).hexdigest(),
    }
    job_path = os.path.join(output, "embed.json")
    if os.path.isfile(job_path):
        with open(job_path, encoding="utf-8") as f:
            old = json.load(f)
        if {k: old.get(k) for k in job} != job:
            raise ValueError(
                f"{output} holds embeddings of another model, runtime or input: use another --output "
                "or delete it"
            )
    with open(job_path, "w", encoding="utf-8") as f:
        json.dump(job, f, indent=2)
    ids, parts, skipped = [], [], {}
    with tqdm(total=len(entries), desc="embeddings", unit="file") as bar:
        for k in range(0, len(entries), CHUNK):
            chunk = entries[k : k + CHUNK]
            path = os.path.join(output, "parts", f"part_{k // CHUNK:05d}.npz")
            if os.path.isfile(path):  # done before an interruption
                saved = np.load(path, allow_pickle=False)
                kept, emb = list(saved["ids"]), saved["embeddings"]
                bad = dict(zip(saved["skipped_ids"], saved["skipped_reasons"]))
            else:
                kept, emb, bad = embed_chunk(chunk, embed_fn, fast, batch_size, embed_fn.sample_rate)
                tmp = path + ".tmp.npz"
                np.savez(
                    tmp,
                    ids=np.array(kept, dtype=str),
                    embeddings=emb,
                    skipped_ids=np.array(list(bad), dtype=str),
                    skipped_reasons=np.array(list(bad.values()), dtype=str),
                )
                os.replace(tmp, path)
            ids += kept
            if len(emb):
                parts.append(emb)
            skipped.update(bad)
            bar.update(len(chunk))
    report = os.path.join(output, REPORT_NAME)
    if os.path.isfile(report):
        os.remove(report)
    if skipped:
        append_report(report, skipped)
    if not ids:
        raise ValueError(f"every one of the {len(entries)} files of {source} is unusable audio: see {report}")
    embeddings = np.concatenate(parts).astype(np.float32)
    np.save(os.path.join(output, "embeddings.npy"), embeddings)
    where = dict(entries)
    with open(os.path.join(output, "index.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{uid}\t{where[uid]}\n" for uid in ids)
    if kaldi:
        import kaldiio

        ark, scp = os.path.join(output, "embeddings.ark"), os.path.join(output, "embeddings.scp")
        with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
            for uid, vector in zip(ids, embeddings):
                writer(uid, vector)
    return {"embedded": len(ids), "skipped": len(skipped), "dim": int(embeddings.shape[1]), "output": output}


def main(argv=None):
    from speechbrain_moco.cli import check_device, user_errors

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="folder written by speechbrain_moco.export")
    parser.add_argument(
        "--input", required=True, help="a folder of audio files, or a list ('path' or 'id path')"
    )
    parser.add_argument("--output", required=True, help="folder for embeddings.npy and index.txt")
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--kaldi", action="store_true", help="also write embeddings.ark / .scp (kaldiio)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument(
        "--fast",
        action="store_true",
        help="batch files of neighbouring lengths (exact with --runtime torch and an ECAPA or x-vector)",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.runtime == "onnx":
        from speechbrain_moco.verification.exported import onnx_process_threads

        onnx_process_threads()
    with user_errors("speechbrain_moco.embed"):
        check_device(args.device)
        summary = run_embed(
            args.model,
            args.input,
            args.output,
            args.runtime,
            args.batch_size,
            args.fast,
            args.kaldi,
            args.device,
        )
    print(
        f"{summary['embedded']} embeddings of dimension {summary['dim']} in {summary['output']}"
        + (f"; {summary['skipped']} files skipped (skipped_audio.txt)" if summary["skipped"] else "")
    )
    return summary


if __name__ == "__main__":
    main()
