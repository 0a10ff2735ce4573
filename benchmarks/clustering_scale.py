#!/usr/bin/env python3
"""Pseudo-label clustering at VoxCeleb2 scale: time and memory on simulated embeddings.

Run::

    python benchmarks/clustering_scale.py [--n=1000000] [--speakers=6000] [--dim=192]

Simulates ``n`` 192-d embeddings of ``speakers`` speakers (unit-norm speaker
centres plus isotropic noise; VoxCeleb2 dev: 1,092,009 utterances of 5,994
speakers), then runs what ``pseudo_labels.py`` runs: spherical
``MiniBatchKMeans`` into ``speakers`` clusters (``cluster_pseudo_labels``), the
purity filter, and NMI / purity against the simulated labels. Writes
``benchmarks/results/clustering_scale.md`` and ``.json`` with the wall time of
each step and the peak resident memory.
"""

import argparse
import os
import resource
import sys
import time

import numpy as np

from speechbrain_moco.experiments.runner import ROOT


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--speakers", type=int, default=6000)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--noise", type=float, default=0.6, help="noise norm relative to the centres")
    parser.add_argument("--keep_ratio", type=float, default=0.8)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "clustering_scale"))
    args = parser.parse_args(argv)

    from speechbrain_moco.experiments.report import machine_description, write_json
    from speechbrain_moco.pseudo_labels import cluster_pseudo_labels, clustering_quality, purity_filter

    rng = np.random.default_rng(0)
    start = time.time()
    centres = rng.standard_normal((args.speakers, args.dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    true = rng.integers(0, args.speakers, args.n)
    x = centres[true]
    x += (args.noise / np.sqrt(args.dim)) * rng.standard_normal(x.shape, dtype=np.float32)
    timings = {"simulate_s": time.time() - start}
    mem = {"after_simulation_mb": peak_mb()}
    start = time.time()
    labels = cluster_pseudo_labels(x, args.speakers, "kmeans", seed=0)
    timings["kmeans_s"] = time.time() - start
    mem["after_kmeans_mb"] = peak_mb()
    start = time.time()
    keep = purity_filter(x, labels, args.keep_ratio)
    timings["purity_filter_s"] = time.time() - start
    start = time.time()
    quality = clustering_quality(labels, true)
    quality_kept = clustering_quality(labels[keep], true[keep])
    timings["quality_s"] = time.time() - start
    result = {
        "command": "python benchmarks/clustering_scale.py " + " ".join(argv),
        "machine": machine_description(),
        "n": args.n,
        "speakers": args.speakers,
        "dim": args.dim,
        "noise": args.noise,
        "embeddings_mb": x.nbytes / 2**20,
        "timings": timings,
        "peak_rss_mb": peak_mb(),
        "memory": mem,
        "quality_all": quality,
        "quality_kept": quality_kept,
        "kept": int(keep.sum()),
    }
    write_json(args.out + ".json", result)
    md = [
        "# Pseudo-label clustering at scale",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}",
        "",
        f"{args.n:,} simulated {args.dim}-d embeddings ({result['embeddings_mb']:.0f} MB float32) of "
        f"{args.speakers:,} speakers, spherical MiniBatchKMeans into {args.speakers:,} clusters "
        "(scikit-learn, `speechbrain_moco.pseudo_labels.cluster_pseudo_labels`).",
        "",
        "| step | seconds |",
        "|---|---|",
    ]
    md += [f"| {k[:-2].replace('_', ' ')} | {v:.1f} |" for k, v in timings.items()]
    md += [
        "",
        f"Peak resident memory: {result['peak_rss_mb']:.0f} MB.  ",
        f"Against the simulated speakers: NMI {quality['nmi']:.3f}, purity {quality['purity']:.3f}; "
        f"after keeping {args.keep_ratio:.0%} per cluster ({result['kept']:,} rows): purity "
        f"{quality_kept['purity']:.3f}.",
        "",
    ]
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("\n".join(md))
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
