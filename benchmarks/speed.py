#!/usr/bin/env python3
"""Speed benchmark: every figure is a ratio or a throughput measured in one run.

Run (on a quiet machine; nothing else should compete for the cores)::

    python benchmarks/speed.py [--data_folder=../shared/data/speechocean762_dev] \
        [--device=cpu] [--precision=fp32] [--batch_size=32] [--crop_seconds=2.0] \
        [--channels=128] [--out=benchmarks/results/speed]

Writes ``<out>.json`` and ``<out>.md``. Each section runs in a fresh
subprocess, so its peak memory (``ru_maxrss``; CUDA: ``max_memory_allocated``)
is its own:

- ``step``: MoCo training step / supervised AAM step, same encoder (the Folder
  recipes' ``moco.yaml`` / ``train_ecapa.yaml``), batch and crop, on tensors
  already in memory; with augmentation (the recipes' own) and without. The
  model-only ideal is about 1.33 (one extra no-grad key forward).
- ``loader``: MoCo step time with the real data pipeline (manifest -> two
  crops -> ``DataLoader``) / step time on tensors in memory, for 0, 1 and 2
  workers, reading audio from disk and from the memory-mapped ``audio_cache``
  (decoded once).
- ``extract``: embedding extraction throughput (seconds of audio per second).
- ``scoring``: trials per second at 40k and 1M trials for cosine, AS-norm and
  PLDA (random 192-d embeddings, 3000-utterance cohort).

Without the data folder the loader section uses the embedded synthetic corpus.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from speechbrain_moco.experiments.report import shown_path
from speechbrain_moco.experiments.runner import ROOT


# --------------------------------------------------------------------- helpers
def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def load_yaml(path, overrides):
    from hyperpyyaml import load_hyperpyyaml

    with open(path, encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides)


def common_overrides(args, out):
    return {
        "output_folder": out,
        "data_folder": None,
        "batch_size": args.batch_size,
        "crop_seconds": args.crop_seconds,
        "channels": args.channels,
        "num_workers": 0,
    }


def moco_brain(args, out, augment=True):
    """A MoCoBrain from the Folder recipe's yaml, ready for ``fit_batch``."""
    from speechbrain_moco.training import MoCoBrain

    hp = load_yaml(
        os.path.join(ROOT, "recipes/Folder/MoCo/hparams/moco.yaml"),
        dict(common_overrides(args, out), queue_size=max(128, 4 * args.batch_size)),
    )
    if not augment:
        hp["augment"] = None
    brain = MoCoBrain(
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts={"device": args.device, "precision": args.precision},
        checkpointer=None,
    )
    brain.on_fit_start()
    brain.modules.train()
    return brain, hp


def supervised_brain(args, out, augment=True, n_speakers=64):
    """A SpeakerBrain from the Folder supervised yaml (same encoder settings)."""
    from speechbrain_moco.training import SpeakerBrain

    hp = load_yaml(
        os.path.join(ROOT, "recipes/Folder/SpeakerRec/hparams/train_ecapa.yaml"), common_overrides(args, out)
    )
    if not augment:
        hp["augment"] = None
    hp["modules"]["classifier"] = hp["classifier"](out_neurons=n_speakers)
    brain = SpeakerBrain(
        modules=hp["modules"],
        opt_class=hp["opt_class"],
        hparams=hp,
        run_opts={"device": args.device, "precision": args.precision},
        checkpointer=None,
    )
    brain.on_fit_start()
    brain.modules.train()
    hp["epoch_counter"].current = 1
    return brain, hp


def fake_batches(kind, args, n=4, seed=0):
    """Padded batches of random speech-like noise, built once (in memory)."""
    import torch
    from speechbrain.dataio.batch import PaddedBatch

    g = torch.Generator().manual_seed(seed)
    crop = int(args.crop_seconds * 16000)
    out = []
    for _ in range(n):
        rows = []
        for i in range(args.batch_size):
            if kind == "moco":
                rows.append(
                    {
                        "id": f"u{i}",
                        "view1": 0.1 * torch.randn(crop, generator=g),
                        "view2": 0.1 * torch.randn(crop, generator=g),
                        "source": "main",
                    }
                )
            else:
                rows.append(
                    {
                        "id": f"u{i}",
                        "sig": 0.1 * torch.randn(crop, generator=g),
                        "spk_id_encoded": torch.LongTensor([i % 64]),
                    }
                )
        out.append(PaddedBatch(rows))
    return out


def time_steps(brain, batches, steps, device):
    """Median seconds of ``fit_batch`` over ``steps`` steps (after 2 warm-up steps)."""
    for b in batches[:2]:
        brain.fit_batch(b)
    times = []
    for i in range(steps):
        sync(device)
        start = time.perf_counter()
        brain.fit_batch(batches[i % len(batches)])
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# -------------------------------------------------------------------- sections
def section_step(args):
    """MoCo / supervised step ratio, with and without augmentation, interleaved."""
    import torch

    torch.set_num_threads(args.threads) if args.threads else None
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for augment in (False, True):
            moco, _ = moco_brain(args, os.path.join(tmp, "m"), augment)
            sup, _ = supervised_brain(args, os.path.join(tmp, "s"), augment)
            mb, sb_ = fake_batches("moco", args), fake_batches("sup", args)
            m_times, s_times = [], []
            for _ in range(args.rounds):  # interleave: drift hits both alike
                m_times += time_steps(moco, mb, args.steps, args.device)[1]
                s_times += time_steps(sup, sb_, args.steps, args.device)[1]
            m, s = statistics.median(m_times), statistics.median(s_times)
            key = "with_augmentation" if augment else "model_only"
            result[key] = {
                "moco_step_s": m,
                "supervised_step_s": s,
                "ratio": m / s,
                "moco_crops_per_s": 2 * args.batch_size / m,
                "supervised_crops_per_s": args.batch_size / s,
            }
    if str(args.device).startswith("cuda"):
        result["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def loader_steps(brain, loader, steps, device):
    """Median seconds per step when batches come from ``loader`` (fetch + step)."""
    it = iter(loader)
    for _ in range(2):
        brain.fit_batch(next(it))
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        batch = next(it)
        brain.fit_batch(batch)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), statistics.mean(times)


def section_loader(args):
    """Step with the real pipeline / step on in-memory tensors, 0-2 workers."""
    import speechbrain as sb
    import torch

    from data_prep.folder_prepare import prepare_folder
    from speechbrain_moco.dataio import AudioCache, SkippingDataset, two_view_dataset

    result = {"workers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data_folder = args.data_folder
        if data_folder is None or not os.path.isdir(data_folder):
            from data_prep.synthetic_corpus import default_workers, generate_corpus

            data_folder = os.path.join(ROOT, "results", "embedded_corpus")
            generate_corpus(data_folder, seed=0, num_workers=default_workers())
        prep = prepare_folder(data_folder, os.path.join(tmp, "manifests"), valid_ratio=0.0)
        brain, hp = moco_brain(args, os.path.join(tmp, "m"), augment=True)
        memory = fake_batches("moco", args)
        in_memory = statistics.median(time_steps(brain, memory, args.steps, args.device)[1])
        result["in_memory_step_s"] = in_memory
        result["data_folder"] = shown_path(data_folder)
        for preload in (False, True):
            hp["two_crops"].audio_cache = (
                AudioCache.build([prep["train"]], data_folder, os.path.join(tmp, "cache"))
                if preload
                else None
            )
            for workers in (0, 1, 2):
                ds = SkippingDataset(
                    two_view_dataset(prep["train"], data_folder, hp["two_crops"]),
                    os.path.join(tmp, "skip.txt"),
                )
                loader = torch.utils.data.DataLoader(
                    ds,
                    batch_size=args.batch_size,
                    shuffle=True,
                    drop_last=True,
                    num_workers=workers,
                    collate_fn=sb.dataio.batch.PaddedBatch,
                    pin_memory=str(args.device).startswith("cuda"),
                    persistent_workers=False,
                )
                median, mean = loader_steps(brain, loader, args.steps, args.device)
                del loader
                key = f"{'cache' if preload else 'disk'}_workers{workers}"
                result["workers"][key] = {
                    "step_s_median": median,
                    "step_s_mean": mean,
                    "ratio_median": median / in_memory,
                    "ratio_mean": mean / in_memory,
                }
                print(f"loader {key}: {median:.3f} s/step (x{median / in_memory:.2f})", flush=True)
    return result


def section_extract(args):
    """Seconds of audio embedded per second (full utterances, batch 8, eval mode)."""
    import torch

    from speechbrain_moco.encoder import embed

    hp = load_yaml(
        os.path.join(ROOT, "recipes/Folder/MoCo/hparams/moco.yaml"),
        common_overrides(args, tempfile.mkdtemp()),
    )
    feats, norm = hp["compute_features"].to(args.device), hp["mean_var_norm"].to(args.device)
    enc = hp["embedding_model"].to(args.device).eval()
    g = torch.Generator().manual_seed(0)
    durations = [2.0 + (i % 7) for i in range(48)]  # 2-8 s, like short read speech
    batches = []
    for i in range(0, len(durations), 8):
        group = durations[i : i + 8]
        n = int(max(group) * 16000)
        wavs = 0.1 * torch.randn(len(group), n, generator=g)
        lens = torch.tensor([d * 16000 / n for d in group])
        batches.append((wavs.to(args.device), lens.to(args.device)))
    with torch.no_grad():
        embed(enc, norm(feats(batches[0][0]), batches[0][1]), batches[0][1])
        sync(args.device)
        start = time.perf_counter()
        for wavs, lens in batches:
            embed(enc, norm(feats(wavs), lens), lens)
        sync(args.device)
    seconds = time.perf_counter() - start
    return {
        "audio_seconds": sum(durations),
        "wall_seconds": seconds,
        "audio_seconds_per_second": sum(durations) / seconds,
    }


def section_scoring(args):
    """Trials per second of each back-end at 40k and 1M trials."""
    import torch

    from speechbrain_moco.verification import CosineScorer, PLDAScorer, normalize_scores, verification_metrics

    g = torch.Generator().manual_seed(0)
    n_utts, dim = 20000, 192
    centres = torch.randn(2000, dim, generator=g)
    spk = torch.randint(0, 2000, (n_utts,), generator=g)
    emb = centres[spk] + 0.8 * torch.randn(n_utts, dim, generator=g)
    cohort = torch.randn(3000, dim, generator=g) + 0.0
    start = time.perf_counter()
    plda = PLDAScorer(n_clusters=300).fit(cohort)
    plda_fit = time.perf_counter() - start
    cos = CosineScorer()
    result = {"plda_fit_seconds_3000": plda_fit, "n_utterances": n_utts}
    for n_trials in (40_000, 1_000_000):
        e = torch.randint(0, n_utts, (n_trials,), generator=g)
        t = torch.randint(0, n_utts, (n_trials,), generator=g)
        labels = (spk[e] == spk[t]).long()
        labels[:10] = 1  # both classes present
        row = {}
        for name, fn in (
            ("cosine", lambda e=e, t=t: cos.score(emb[e], emb[t])),
            (
                "asnorm",
                lambda e=e, t=t: normalize_scores(
                    cos.score(emb[e], emb[t]), emb, emb, cohort, "asnorm", 300, e, t, scorer=cos
                ),
            ),
            ("plda", lambda e=e, t=t: plda.score(emb[e], emb[t])),
        ):
            start = time.perf_counter()
            scores = fn()
            seconds = time.perf_counter() - start
            row[name] = {"seconds": seconds, "trials_per_s": n_trials / seconds}
        start = time.perf_counter()
        verification_metrics(scores, labels)
        row["metrics_seconds"] = time.perf_counter() - start
        result[f"{n_trials}"] = row
    return result


SECTIONS = {
    "step": section_step,
    "loader": section_loader,
    "extract": section_extract,
    "scoring": section_scoring,
}


# ------------------------------------------------------------------------ main
def run_section(name, argv):
    """Run one section in a fresh interpreter; returns its JSON (+ peak memory)."""
    cmd = [sys.executable, os.path.abspath(__file__), f"--only={name}"] + argv
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"section {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(res):
    step, loader = res.get("step"), res.get("loader")
    lines = [
        "# Speed benchmark",
        "",
        f"Command: `{res['command']}`  ",
        f"Machine: {res['machine']}  ",
        f"Settings: batch {res['settings']['batch_size']} x {res['settings']['crop_seconds']} s crops, "
        f"ECAPA channels {res['settings']['channels']}, device {res['settings']['device']}, "
        f"precision {res['settings']['precision']}",
        "",
    ]
    if step:
        lines += [
            "## MoCo step / supervised step (same encoder, batch, crop; tensors in memory)",
            "",
            "| | MoCo s/step | supervised s/step | ratio | MoCo crops/s | peak RSS MB |",
            "|---|---|---|---|---|---|",
        ]
        for key in ("model_only", "with_augmentation"):
            r = step[key]
            lines.append(
                f"| {key.replace('_', ' ')} | {r['moco_step_s']:.3f} | "
                f"{r['supervised_step_s']:.3f} | **{r['ratio']:.2f}** | "
                f"{r['moco_crops_per_s']:.0f} | {step['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    if loader:
        lines += [
            "## Loader overhead: MoCo step with the real pipeline / step on in-memory tensors",
            "",
            f"In-memory step: {loader['in_memory_step_s']:.3f} s; data: {loader['data_folder']}",
            "",
            "| audio | workers | s/step (median) | ratio (median) | ratio (mean) |",
            "|---|---|---|---|---|",
        ]
        for key, r in loader["workers"].items():
            audio, workers = key.rsplit("_workers", 1)
            lines.append(
                f"| {audio} | {workers} | {r['step_s_median']:.3f} | **{r['ratio_median']:.2f}** | "
                f"{r['ratio_mean']:.2f} |"
            )
        lines += ["", f"Peak RSS of the loader section: {loader['peak_rss_mb']:.0f} MB", ""]
    if "extract" in res:
        e = res["extract"]
        lines += [
            "## Embedding extraction",
            "",
            f"{e['audio_seconds_per_second']:.0f} s of audio per second ({e['audio_seconds']:.0f} s "
            f"of 2-8 s utterances in {e['wall_seconds']:.2f} s, batch 8); peak RSS "
            f"{e['peak_rss_mb']:.0f} MB",
            "",
        ]
    if "scoring" in res:
        s = res["scoring"]
        lines += [
            "## Scoring throughput (trials per second)",
            "",
            "| trials | cosine | AS-norm (top 300 of 3000) | PLDA | EER+minDCF s |",
            "|---|---|---|---|---|",
        ]
        for n in ("40000", "1000000"):
            r = s[n]
            lines.append(
                f"| {int(n):,} | {r['cosine']['trials_per_s']:,.0f} | "
                f"{r['asnorm']['trials_per_s']:,.0f} | {r['plda']['trials_per_s']:,.0f} | "
                f"{r['metrics_seconds']:.2f} |"
            )
        lines += [
            "",
            "PLDA fit on 3000 embeddings (k-means pseudo-labels): "
            f"{s['plda_fit_seconds_3000']:.1f} s; peak RSS of the scoring section "
            f"{s['peak_rss_mb']:.0f} MB",
            "",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data_folder", default=os.path.join(ROOT, "..", "shared", "data", "speechocean762_dev")
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--crop_seconds", type=float, default=2.0)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--sections", default="step,loader,extract,scoring")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "speed"))
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        import torch

        if str(args.device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        res = SECTIONS[args.only](args)
        res["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(res))
        return res
    from speechbrain_moco.experiments.report import machine_description, write_json

    passed = [a for a in argv if not a.startswith("--out")]
    res = {
        "command": "python benchmarks/speed.py " + " ".join(argv),
        "machine": machine_description(),
        "settings": {
            k: getattr(args, k)
            for k in ("batch_size", "crop_seconds", "channels", "device", "precision", "steps", "rounds")
        },
    }
    for name in args.sections.split(","):
        start = time.time()
        res[name] = run_section(name, passed)
        print(f"{name}: done in {time.time() - start:.0f} s", flush=True)
    write_json(args.out + ".json", res)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()
