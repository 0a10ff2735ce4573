#!/usr/bin/env python3
"""Inference speed of an exported model on real speech, side by side.

Run (a quiet machine: a timing beside another job is not a figure)::

    python benchmarks/inference_speed.py --model DIR [--data_folder=../shared/data/speechocean762_dev] \
        [--n_files 200] [--batch_size 16] [--repeats 3] [--rounds 3]

``DIR`` is an exported model folder with ``embedding_model.onnx``
(``python -m speechbrain_moco.export --pretrain_path=RUN --model_dir=DIR --onnx``). The files
are the first ``--n_files`` utterances of 2-8 s of ``--data_folder`` (sorted paths). Modes,
each in a process of its own (its peak memory is that process's), timed over ``--repeats``
passes after one warm-up pass, audio reading included. ``--rounds`` rounds run every mode
once each, interleaved, and the ratios are paired within a round (median [min, max] over the
rounds): on a shared machine one mode's process alone varied by 1.5x between two runs, and
a ratio of two processes run minutes apart is not a figure. Modes:

- ``speechbrain_one_file``: SpeechBrain's interface (``foreign_class`` + the folder's
  ``interface.py``, an ``EncoderClassifier``), ``encode_batch`` one file at a time: what a
  user gets today;
- ``torch_exact``: ``speechbrain_moco.embed``'s exact extraction in PyTorch (files batched
  only with files of exactly their length);
- ``torch_fast``: ``speechbrain_moco.embed --fast`` (files of neighbouring lengths in
  batches of ``--batch_size``, their padding made inert: each file's features cut to its own
  frames, each convolution's end padding rewritten per row);
- ``torch_padded``: the same batches with plain zero padding (what ``--fast`` does where the
  padding cannot be made inert: onnxruntime, other encoders);
- ``onnx_exact``: the exact extraction through onnxruntime.

Every mode's score deviation from ``torch_exact`` is the largest difference of the cosine of
any two files.

Writes ``benchmarks/results/inference_speed.{md,json}``: files and audio seconds per second,
peak memory, and the ratios of one run.
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

import speechbrain_moco  # noqa: F401  (first: it quiets SpeechBrain's import-time torchvision note)

# isort: split
from speechbrain_moco.experiments import report
from speechbrain_moco.experiments.runner import ROOT

MODES = ("speechbrain_one_file", "torch_exact", "torch_fast", "torch_padded", "onnx_exact")


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

        runtime = "onnx" if mode.startswith("onnx") else "torch"
        if runtime == "onnx":
            from speechbrain_moco.verification.exported import onnx_process_threads

            onnx_process_threads()  # as the embed and verify commands do
        fn = load_exported(model, runtime, threads=int(os.environ.get("BENCH_THREADS", "2")))
        fast = mode in ("torch_fast", "torch_padded")

        def once():
            _, emb, bad = embed_chunk(
                entries, fn, fast, batch_size, fn.sample_rate, zero_padding=mode == "torch_padded"
            )
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
    parser.add_argument("--rounds", type=int, default=3, help="every mode once per round, interleaved")
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
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rounds = []  # per round: {mode: median seconds of that round's passes}
    for _ in range(args.rounds):  # modes interleaved: a drift of the machine hits every mode alike
        this_round = {}
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
            subprocess.run(cmd, check=True, env=env, cwd=ROOT)
            with open(os.path.join(args.work_folder, mode + ".json"), encoding="utf-8") as f:
                r = json.load(f)
            this_round[mode] = float(np.median(r["seconds"]))
            if mode not in results:
                results[mode] = r
                results[mode]["embeddings"] = np.load(os.path.join(args.work_folder, mode + ".npy"))
            else:
                results[mode]["seconds"] += r["seconds"]
                results[mode]["peak_rss_mb"] = max(results[mode]["peak_rss_mb"], r["peak_rss_mb"])
        rounds.append(this_round)
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
    for mode in rows:  # ratios paired within each round: median [min, max] over the rounds
        for ref_mode in ("torch_exact", "speechbrain_one_file"):
            key = "speed_vs_" + ref_mode
            if ref_mode in rows:
                ratios = [rnd[ref_mode] / rnd[mode] for rnd in rounds]
                rows[mode][key] = round(float(np.median(ratios)), 2)
                rows[mode][key + "_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    goals = issue_goals(rows)
    result = {
        "command": report.shown_command("python benchmarks/inference_speed.py", argv),
        "machine": report.machine_description(),
        "files": f"{len(files)} files of {args.min_seconds:g}-{args.max_seconds:g} s from "
        f"{report.shown_path(args.data_folder)}, {audio:.0f} s of audio",
        "threads": int(os.environ.get("BENCH_THREADS", "2")),
        "rounds": args.rounds,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "modes": rows,
        "goals": goals,
    }
    lines = [
        "# Inference speed of an exported model",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Data: {result['files']}; {result['threads']} threads (onnxruntime's for onnx; torch then runs 1 "
        f"beside it); {args.rounds} rounds of the modes interleaved, {args.repeats} timed passes each "
        "after a warm-up, audio reading included; speeds are the median of all passes, ratios "
        "paired within a round (median [min, max] over rounds)",
        "",
        "| mode | files/s | audio s/s | x torch exact | x SpeechBrain one file | peak RSS MB "
        "| max score deviation |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        nan = float("nan")
        lines.append(
            f"| {mode} | {r['files_per_second']:.1f} | {r['audio_seconds_per_second']:.0f} | "
            f"{ratio_text(r, 'speed_vs_torch_exact')} | {ratio_text(r, 'speed_vs_speechbrain_one_file')} | "
            f"{r['peak_rss_mb']:.0f} | {r.get('max_score_deviation_from_torch_exact', nan):.1e} |"
        )
    if goals:
        lines += ["", "| goal | measured | met |", "|---|---|---|"]
        for g in goals:
            lines.append(f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |")
    report.write_results(args.out, result, lines)
    return result


def ratio_text(row, key):
    """``1.23 [1.10, 1.31]`` (median [min, max] over rounds), or ``nan``."""
    if key not in row:
        return "nan"
    low, high = row.get(key + "_range", [row[key], row[key]])
    return f"{row[key]:.2f} [{low:.2f}, {high:.2f}]"


def issue_goals(rows):
    """The deployment goals, judged on this run's numbers: onnxruntime at least 1.3x the exact
    PyTorch extraction; a fast mode at least 2x the exact one with a score deviation of at most
    1e-3. ``[{goal, measured, met}]`` for the goals whose modes ran.

    Example
    -------
    >>> rows = {"torch_exact": {"speed_vs_torch_exact": 1.0},
    ...         "onnx_exact": {"speed_vs_torch_exact": 1.5},
    ...         "torch_fast": {"speed_vs_torch_exact": 2.4, "max_score_deviation_from_torch_exact": 0.02}}
    >>> [(g["goal"].split(":")[0], g["met"]) for g in issue_goals(rows)]
    [('onnxruntime', True), ('fast mode', False)]
    """
    goals = []
    if "onnx_exact" in rows and "torch_exact" in rows:
        ratio = rows["onnx_exact"]["speed_vs_torch_exact"]
        goals.append(
            {
                "goal": "onnxruntime: at least 1.3x torch exact",
                "measured": f"{ratio_text(rows['onnx_exact'], 'speed_vs_torch_exact')}x",
                "met": ratio >= 1.3,
            }
        )
    if "torch_fast" in rows and "torch_exact" in rows:
        ratio = rows["torch_fast"]["speed_vs_torch_exact"]
        dev = rows["torch_fast"].get("max_score_deviation_from_torch_exact", float("inf"))
        goals.append(
            {
                "goal": "fast mode: at least 2x torch exact with a score deviation of at most 1e-3",
                "measured": f"{ratio_text(rows['torch_fast'], 'speed_vs_torch_exact')}x, deviation {dev:.1e}",
                "met": bool(ratio >= 2.0 and dev <= 1e-3),
            }
        )
    return goals


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
