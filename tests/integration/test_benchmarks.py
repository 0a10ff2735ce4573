"""The benchmark scripts run end to end on tiny settings and write their result files."""

import json
import os

from conftest import run

SMALL = (
    "--channels=16 --emb_dim=16 --n_mels=24 --batch_size=4 --crop_seconds=0.5 --num_workers=0 "
    "--number_of_epochs=1"
)


def test_quality_benchmark_on_a_folder_corpus(tmp_path):
    from conftest import write_tone_corpus

    corpus = write_tone_corpus(str(tmp_path / "tones"), n_speakers=8, n_utts=6)
    os.remove(os.path.join(corpus, "trials.txt"))
    out = tmp_path / "quality"
    stdout = run(
        [
            "benchmarks/quality.py",
            f"--data_folder={corpus}",
            f"--work_folder={tmp_path / 'work'}",
            "--skip_embedded",
            "--seeds",
            "1",
            "2",
            "--resamples=100",
            f"--out={out}",
            f"--stage_args={SMALL}",
        ],
        timeout=1200,
    )
    result = json.load(open(f"{out}.json"))
    split = result["corpora"]["split"]
    assert list(split["systems"]) == [
        "fbank_stats",
        "mfcc_stats",
        "random_ecapa",
        "random_xvector",
        "moco_ecapa",
        "moco_ecapa_msub",
        "moco_ecapa_plda",
        "moco_xvector",
        "supervised_ecapa",
        "supervised_ecapa_msub",
    ]
    untrained = ("fbank_stats", "mfcc_stats", "random_ecapa", "random_xvector")
    for name, by_list in split["systems"].items():
        summary = by_list["trials_all.txt"]
        assert summary["n_runs"] == (1 if name in untrained else 2), name  # every trained system, every seed
        low, high = summary["EER_ci95"]
        assert 0.0 <= low <= high <= 100.0
    assert set(split["train_seconds"]) == {"moco", "moco_xvector", "scratch"}
    assert all(len(v) == 2 for v in split["train_seconds"].values())
    systems = split["systems"]
    for name, variant in (("moco_ecapa", "_msub"), ("moco_ecapa", "_plda"), ("supervised_ecapa", "_msub")):
        assert systems[name + variant]["trials_all.txt"]["runs"] != systems[name]["trials_all.txt"]["runs"]
    work = tmp_path / "work"
    plda = json.load(open(work / "f0" / "s2" / "eval" / "moco_plda" / "trials_all" / "metrics.json"))
    assert plda["backend"] == "PLDAScorer"
    assert "moco_xvector" in open(f"{out}.md").read() and "moco_xvector" in stdout
    # paired comparisons (this corpus has no speakers.tsv: trials_all.txt only), seeds
    # paired: an untrained bar pairs with every seed
    compared = {(c["B"], c["A"], c["list"]): c for c in split["comparisons"]}
    assert len(compared) == 6 and ("supervised_ecapa", "moco_ecapa", "trials_all.txt") in compared
    assert all(c["n_seeds"] == 2 for c in compared.values())
    for c in compared.values():
        low, high = c["difference_ci95"]
        assert low <= high and abs(c["half_width"] - (high - low) / 2) < 1e-9
        assert c["verdict"] == ("not resolved" if low <= 0 <= high else "better" if high < 0 else "worse")
    mfcc = compared[("moco_ecapa", "mfcc_stats", "trials_all.txt")]
    assert abs(mfcc["EER_A"] - systems["mfcc_stats"]["trials_all.txt"]["EER"]) < 1e-6
    assert "| moco_ecapa vs mfcc_stats | trials_all.txt |" in open(f"{out}.md").read()


def test_speed_benchmark_writes_ratios(tmp_path, tone_corpus):
    out = tmp_path / "speed"
    run(
        [
            "benchmarks/speed.py",
            f"--data_folder={tone_corpus}",
            "--batch_size=4",
            "--channels=16",
            "--crop_seconds=0.5",
            "--steps=2",
            "--rounds=1",
            "--sections=step,loader,extract",
            f"--out={out}",
        ],
        timeout=900,
    )
    result = json.load(open(f"{out}.json"))
    for key in ("model_only", "with_augmentation"):
        step = result["step"][key]
        assert step["ratio"] == step["moco_step_s"] / step["supervised_step_s"] > 0
    expected = {f"{a}_workers{w}" for a in ("disk", "cache") for w in (0, 1, 2)}
    assert set(result["loader"]["workers"]) == expected
    assert result["extract"]["audio_seconds_per_second"] > 0
    assert result["step"]["peak_rss_mb"] > 0
    assert "Loader overhead" in open(f"{out}.md").read()


def test_bootstrap_speed_benchmark_checks_the_fast_path(tmp_path):
    out = tmp_path / "bs"
    run(
        [
            "benchmarks/bootstrap_speed.py",
            f"--data_folder={tmp_path / 'absent'}",  # the generated list of the same shape
            f"--work_folder={tmp_path / 'w'}",
            "--resamples=50",
            "--repeats=1",
            "--check_resamples=3",
            f"--out={out}",
        ],
        timeout=600,
    )
    result = json.load(open(f"{out}.json"))
    assert result["n_trials"] == 868 * 867 // 2 and result["n_speakers"] == 62
    assert result["max_abs_difference_eer"] < 1e-9 and result["median_seconds"] > 0
    low, high = result["intervals"]["EER_ci95"]
    assert 0 < low < high < 100


def test_inference_speed_benchmark_runs_every_mode(tmp_path, tone_corpus):
    from conftest import train_moco

    train_moco(tone_corpus, tmp_path / "moco", "--number_of_epochs=1")
    model = tmp_path / "model"
    run(
        [
            "-m",
            "speechbrain_moco.export",
            f"--pretrain_path={tmp_path / 'moco'}",
            f"--model_dir={model}",
            "--onnx",
        ]
    )
    out = tmp_path / "speed"
    run(
        [
            "benchmarks/inference_speed.py",
            f"--model={model}",
            f"--data_folder={tone_corpus}",
            f"--work_folder={tmp_path / 'w'}",
            "--n_files=8",
            "--repeats=1",
            "--rounds=2",
            "--min_seconds=0.5",
            "--max_seconds=2",
            f"--out={out}",
        ],
        timeout=900,
    )
    modes = json.load(open(f"{out}.json"))["modes"]
    assert set(modes) == {"speechbrain_one_file", "torch_exact", "torch_fast", "torch_padded", "onnx_exact"}
    assert modes["torch_exact"]["speed_vs_torch_exact"] == 1.0 and modes["torch_exact"]["peak_rss_mb"] > 0
    # two interleaved rounds: every pass kept, ratios paired within a round
    assert all(len(m["seconds"]) == 2 for m in modes.values())
    low, high = modes["onnx_exact"]["speed_vs_torch_exact_range"]
    assert low <= modes["onnx_exact"]["speed_vs_torch_exact"] <= high
    # every mode embeds as the exact extraction does, to float rounding (equal-length files)
    assert all(m["max_score_deviation_from_torch_exact"] < 1e-4 for m in modes.values())
    # the two goals, judged on the run's own ratios
    goals = {g["goal"].split(":")[0]: g for g in json.load(open(f"{out}.json"))["goals"]}
    assert set(goals) == {"onnxruntime", "fast mode"}
    assert goals["onnxruntime"]["met"] == (modes["onnx_exact"]["speed_vs_torch_exact"] >= 1.3)
    assert "| goal | measured | met |" in open(f"{out}.md").read()
