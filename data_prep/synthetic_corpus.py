"""Offline, deterministic synthetic multi-speaker "speech" corpus for tests and demos.

Speakers and utterances come from :mod:`data_prep.synthetic_voice`; each utterance gets
its own random recording channel (EQ, band limits, noise at 20-40 dB SNR), so long-term
spectral statistics alone do not identify the speaker.

Writes ``<out>/spkNNN/uttNNN.wav`` (mono PCM16), ``<out>/trials.txt`` (VoxCeleb format,
last ``n_held_out`` speakers only, balanced) and ``<out>/corpus_info.json`` (last). Run::

    python -m data_prep.synthetic_corpus OUT [--seed N]
"""

import argparse
import functools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from data_prep.synthetic_voice import draw_speaker, render_utterance
from speechbrain_moco.dataio.trials import balanced_trials

logger = get_logger(__name__)

INFO_FILE = "corpus_info.json"


def default_workers():
    """Synthesis processes by default: the cores this process may use, at most 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, cores or 1)


def generate_corpus(
    out_folder,
    n_speakers=120,
    n_held_out=20,
    utts_per_speaker=10,
    min_dur=2.0,
    max_dur=6.0,
    sample_rate=16000,
    seed=0,
    n_target_per_spk=20,
    num_workers=1,
):
    """Generate the corpus deterministically from ``seed`` (skipped if already there).

    Arguments
    ---------
    out_folder : str or os.PathLike
        Output root: ``spkNNN/uttNNN.wav``, ``trials.txt``, ``corpus_info.json``.
    n_speakers, n_held_out, utts_per_speaker : int
        Speakers in total, of which the last ``n_held_out`` form the trial list.
    min_dur, max_dur, sample_rate : float, float, int
        Utterance duration range in seconds (uniform) and sample rate in Hz.
    seed : int
        Seed of everything (numpy ``Generator`` seeded per speaker and utterance).
    n_target_per_spk : int
        Target trials per held-out speaker (capped by the available pairs); as many
        non-target trials are added.
    num_workers : int
        Processes used for synthesis (``spawn``); the output does not depend on it.

    Returns
    -------
    dict
        The content of ``corpus_info.json``.
    """
    options = {k: v for k, v in locals().items() if k not in ("out_folder", "num_workers")}
    options["version"] = 1  # bump when the synthesiser changes
    if not 0 < n_held_out < n_speakers or n_held_out < 2:
        raise ValueError("need 2 <= n_held_out < n_speakers")
    info_path = os.path.join(out_folder, INFO_FILE)
    if os.path.isfile(info_path):
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        if info.get("options") == options:
            logger.info("Synthetic corpus in %s is up to date, skipping", out_folder)
            return info
        os.remove(info_path)  # an interrupted regeneration must not look complete
    speakers, utts_by_spk, jobs = {}, {}, []
    for s in range(n_speakers):
        name = f"spk{s:03d}"
        speakers[name] = draw_speaker(np.random.default_rng([seed, s]))
        os.makedirs(os.path.join(out_folder, name), exist_ok=True)
        utts_by_spk[name] = [f"{name}/utt{u:03d}.wav" for u in range(utts_per_speaker)]
        jobs += [
            (os.path.join(out_folder, rel), speakers[name], (seed, s, u + 1))
            for u, rel in enumerate(utts_by_spk[name])
        ]
    render = functools.partial(render_utterance, durations=(min_dur, max_dur), sample_rate=sample_rate)
    if num_workers > 1:
        ctx = multiprocessing.get_context("spawn")  # no fork of a torch process
        with ProcessPoolExecutor(num_workers, mp_context=ctx) as pool:
            list(tqdm(pool.map(render, jobs, chunksize=8), total=len(jobs), desc="synthesising"))
    else:
        list(tqdm(map(render, jobs), total=len(jobs), desc="synthesising"))
    held_out = {k: utts_by_spk[k] for k in sorted(utts_by_spk)[-n_held_out:]}
    trial_rng = np.random.default_rng([seed, 10**6])
    trials = balanced_trials(held_out, n_target_per_spk, trial_rng)
    with open(os.path.join(out_folder, "trials.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"{lab} {a} {b}\n" for lab, a, b in trials)
    info = {"options": options, "speakers": speakers, "held_out": sorted(held_out)}
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    n_utts = n_speakers * utts_per_speaker
    logger.info("Wrote %d utterances, %d trials to %s", n_utts, len(trials), out_folder)
    return info


def main(argv=None):
    """Command-line entry point: ``python -m data_prep.synthetic_corpus OUT [--seed N]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=default_workers())
    args = parser.parse_args(argv)
    generate_corpus(args.out_folder, seed=args.seed, num_workers=args.num_workers)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO)
    main()
