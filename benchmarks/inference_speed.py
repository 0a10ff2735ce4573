#!/usr/bin/env python3
"""Inference speed of an exported model on real speech, side by side.

Run (a quiet machine: a timing beside another job is not a figure)::

    python benchmarks/inference_speed.py --model DIR [--data_folder=../shared/data/speechocean762_dev] \
        [--n_files 200] [--batch_size 16] [--repeats 3]

``DIR`` is an exported model folder with ``embedding_model.onnx``
(``python -m speechbrain_moco.export --pretrain_path=RUN --model_dir=DIR --onnx``). The files
are the first ``--n_files`` utterances of 2-8 s of ``--data_folder`` (sorted paths). Modes,
each in a process of its own (its peak memory is that process's), timed over ``--repeats``
passes after one warm-up pass (median), audio reading included:

- ``speechbrain_one_file``: SpeechBrain's interface (``foreign_class`` + the folder's
  ``interface.py``, an ``EncoderClassifier``), ``encode_batch`` one file at a time: what a
  user gets today;
- ``torch_exact``: ``speechbrain_moco.embed``'s exact extraction in PyTorch (files batched
  only with files of exactly their length);
- ``torch_fast``: ``speechbrain_moco.embed --fast`` (files of similar length padded into
  batches of ``--batch_size``), with its score deviation from the exact embeddings (largest
  difference of the cosine of any two files);
- ``onnx_exact``: the exact extraction through onnxruntime.

Writes ``benchmarks/results/inference_speed.{md,json}``: files and audio seconds per second,
peak memory, and the ratios of one run.
"""

import json
import os
import resource
import shlex
import subprocess
import sys
import time

import numpy as np

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
from speechbrain_moco.experiments import report
from speechbrain_moco.experiments.runner import ROOT

MODES = ("speechbrain_one_file", "torch_exact", "torch_fast", "onnx_exact")


def speech_files(data_folder, n_files, low=2.0, high=8.0):
    """The first ``n_files`` audio files of ``low``-``high`` seconds (sorted paths)."""
    import soundfile as sf

    from speechbrain_moco.dataio.audio import find_audio_files

    out = []
    for rel in find_audio_files(data_folder):
        info = sf.info(os.path.join(data_folder, rel))
        if low <= info.frames / info.samplerate <= high:
            out.append(os.path.join(data_folder, rel))
        if len(out) == n_files:
            break
    return out


def worker(mode, model, files, batch_size, repeats, out):
    """One mode in this process: times, and the embeddings of every file (in order)."""
    import soundfile as sf
    import torch

    from speechbrain_moco.embed import embed_chunk

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    entries = [(str(i), p) for i, p in enumerate(files)]
    if mode == "speechbrain_one_file":
        from speechbrain_moco.verify import load_model

        sb_model = load_model(model)

        def once():
            rows = []
            for _, path in entries:
                wav = sb_model.load_audio(path)
                rows.append(sb_model.encode_batch(wav[None]).reshape(-1).float().numpy())
            return np.stack(rows)

    else:
        from speechbrain_moco.verification.exported import load_exported

        fn = load_exported(model, "onnx" if mode.startswith("onnx") else "torch", threads=2)
        fast = mode == "torch_fast"

        def once():
            _, emb, bad = embed_chunk(entries, fn, fast, batch_size, fn.sample_rate)
            if bad:
                raise RuntimeError(f"unusable benchmark files: {bad}")
            return emb

    with torch.no_grad():
        once()  # warm-up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            emb = once()
            seconds.append(time.perf_counter() - start)
    audio = sum(sf.info(p).frames / sf.info(p).samplerate for p in files)
    np.save(out + ".npy", emb)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump({"mode": mode, "seconds": seconds, "audio_seconds": audio, "peak_rss_mb": peak_mb}, f)


def cosine_matrix(emb):
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return emb @ emb.T


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = report.benchmark_parser(__doc__, "inference_speed")
    parser.add_argument("--model", required=True, help="exported model folder with embedding_model.onnx")
    parser.add_argument("--n_files", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--worker", default=None, help=argparse_hidden())
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "inference_speed"))
    args = parser.parse_args(argv)
    files = speech_files(args.data_folder, args.n_files, args.min_seconds, args.max_seconds)
    if not files:
        raise SystemExit(
            f"no audio file of {args.min_seconds:g}-{args.max_seconds:g} s in {args.data_folder}"
        )
    os.makedirs(args.work_folder, exist_ok=True)
    if args.worker:
        worker(
            args.worker,
            args.model,
            files,
            args.batch_size,
            args.repeats,
            os.path.join(args.work_folder, args.worker),
        )
        return None
    results = {}
    for mode in args.modes:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            f"--model={args.model}",
            f"--data_folder={args.data_folder}",
            f"--work_folder={args.work_folder}",
            f"--n_files={args.n_files}",
            f"--batch_size={args.batch_size}",
            f"--repeats={args.repeats}",
            f"--worker={mode}",
            f"--min_seconds={args.min_seconds}",
            f"--max_seconds={args.max_seconds}",
        ]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        with open(os.path.join(args.work_folder, mode + ".json"), encoding="utf-8") as f:
            results[mode] = json.load(f)
        results[mode]["embeddings"] = np.load(os.path.join(args.work_folder, mode + ".npy"))
    audio = results[args.modes[0]]["audio_seconds"]
    rows = {}
    for mode, r in results.items():
        median = float(np.median(r["seconds"]))
        rows[mode] = {
            "median_seconds": round(median, 3),
            "seconds": [round(s, 3) for s in r["seconds"]],
            "files_per_second": round(len(files) / median, 2),
            "audio_seconds_per_second": round(audio / median, 1),
            "peak_rss_mb": round(r["peak_rss_mb"], 1),
        }
    exact = results.get("torch_exact", {}).get("embeddings")
    if exact is not None:
        ref = cosine_matrix(exact)
        for mode, r in results.items():
            rows[mode]["max_score_deviation_from_torch_exact"] = float(
                np.abs(cosine_matrix(r["embeddings"]) - ref).max()
            )
    base = rows.get("torch_exact", {}).get("median_seconds")
    for mode in rows:
        if base:
            rows[mode]["speed_vs_torch_exact"] = round(base / rows[mode]["median_seconds"], 2)
        if "speechbrain_one_file" in rows:
            rows[mode]["speed_vs_speechbrain_one_file"] = round(
                rows["speechbrain_one_file"]["median_seconds"] / rows[mode]["median_seconds"], 2
            )
    result = {
        "command": "python benchmarks/inference_speed.py " + " ".join(shlex.quote(a) for a in argv),
        "machine": report.machine_description(),
        "files": f"{len(files)} files of {args.min_seconds:g}-{args.max_seconds:g} s from "
        f"{report.shown_path(args.data_folder)}, {audio:.0f} s of audio",
        "threads": int(os.environ.get("BENCH_THREADS", "2")),
        "batch_size": args.batch_size,
        "modes": rows,
    }
    lines = [
        "# Inference speed of an exported model",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Data: {result['files']}; {result['threads']} threads; median of {args.repeats} passes after "
        "a warm-up, audio reading included",
        "",
        "| mode | files/s | audio s/s | x torch exact | x SpeechBrain one file | peak RSS MB "
        "| max score deviation |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        nan = float("nan")
        lines.append(
            f"| {mode} | {r['files_per_second']:.1f} | {r['audio_seconds_per_second']:.0f} | "
            f"{r.get('speed_vs_torch_exact', nan):.2f} | {r.get('speed_vs_speechbrain_one_file', nan):.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r.get('max_score_deviation_from_torch_exact', nan):.1e} |"
        )
    report.write_results(args.out, result, lines)
    return result


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
