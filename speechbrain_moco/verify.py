"""Verify a pair of recordings, or score a trial list, with an exported model folder.

``python -m speechbrain_moco.verify a.wav b.wav --model DIR [--threshold=T]``

``python -m speechbrain_moco.verify --model DIR --trials TRIALS --data_folder ROOT
--output_folder EVAL [--runtime torch|onnx]`` scores a trial list (VoxCeleb or Kaldi format,
paths relative to ``ROOT``) with the exported model alone: ``EVAL/scores.txt`` and
``EVAL/metrics.json`` (EER, minDCF, their 95 % intervals over speakers, and the false-accept
and miss rates at the model's threshold), as the recipe's ``verify.py`` writes them; the
embeddings are the model's of each whole file (:mod:`speechbrain_moco.verification.exported`).

``DIR`` is written by ``python -m speechbrain_moco.export``. The model is loaded with
SpeechBrain's ``foreign_class`` and the folder's ``interface.py``
(:class:`speechbrain_moco.verification.interface.MoCoSpeakerRecognition`, local folder,
no hub access); the pair is scored with its ``verify_files`` (cosine of the two
embeddings) and decided at the folder's threshold unless ``--threshold`` is given.
Prints the score, its calibrated log-likelihood ratio and the decision.
"""

import argparse
import os
import sys

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


def load_model(model_dir, savedir=None, device="cpu"):
    """The exported model of ``model_dir`` as a ``MoCoSpeakerRecognition``.

    ``savedir`` None reads every file in place.
    """
    from speechbrain.inference.interfaces import foreign_class

    for name in ("hyperparams.yaml", "interface.py"):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise FileNotFoundError(
                f"{model_dir} has no {name}: export a run there first (python -m speechbrain_moco.export)"
            )
    source = os.path.abspath(model_dir)
    return foreign_class(
        source=source,
        pymodule_file="interface.py",
        classname="MoCoSpeakerRecognition",
        savedir=savedir or source,
        run_opts={"device": device},
    )


def check_audio_file(path):
    """Raise a one-line error naming ``path`` unless it is usable audio (readable, finite,
    not empty, not silent: :func:`speechbrain_moco.dataio.bad_audio.audio_problem`)."""
    import soundfile as sf

    from speechbrain_moco.dataio.bad_audio import audio_problem

    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        rate = sf.info(path).samplerate
    except Exception as err:  # soundfile raises several types
        raise ValueError(f"{path} is not an audio file soundfile can read ({err})") from None
    problem = audio_problem(path, rate)
    if problem:
        raise ValueError(f"{path}: {problem}")


def verify_pair(path_a, path_b, model_dir, threshold=None, savedir=None, device="cpu"):
    """``(score, threshold, same_speaker, llr)`` of two audio files."""
    for path in (path_a, path_b):
        check_audio_file(path)
    model = load_model(model_dir, savedir, device)
    threshold = model.threshold if threshold is None else float(threshold)
    score = model.score_files(path_a, path_b)
    return score, threshold, score > threshold, float(model.llr(score))


def score_trials(model_dir, trials, data_folder, output_folder, runtime="torch", device="cpu", batch_size=8):
    """Score a trial list with an exported model; returns ``metrics.json`` (with the error
    rates of the model's own decisions)."""
    from speechbrain_moco.verification.calibration import error_rates
    from speechbrain_moco.verification.evaluate import evaluate_trials
    from speechbrain_moco.verification.exported import load_exported
    from speechbrain_moco.verification.score_files import read_scores, write_metrics

    if not os.path.isfile(trials):
        raise FileNotFoundError(f"--trials={trials}: no such trial list")
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"--data_folder={data_folder}: no such folder")
    fn = load_exported(model_dir, runtime, device)
    metrics = evaluate_trials(
        trials,
        data_folder,
        fn,
        output_folder,
        device,
        batch_size,
        fn.sample_rate,
        progress=True,
        cache_key=fn.checkpoint,
        system=f"{os.path.basename(os.path.normpath(model_dir))} ({runtime})",
    )
    _, _, scores, labels = read_scores(os.path.join(output_folder, "scores.txt"))
    far, miss = error_rates(scores, labels, fn.threshold)
    metrics.update(
        model=os.path.abspath(model_dir),
        runtime=runtime,
        threshold=fn.threshold,
        false_accept_rate=far,
        miss_rate=miss,
        accepted=int((scores > fn.threshold).sum()),
    )
    write_metrics(os.path.join(output_folder, "metrics.json"), metrics)
    return metrics


def main(argv=None):
    """Command line entry point: a pair (score, llr, decision) or a trial list."""
    parser = argparse.ArgumentParser(description="cosine verification with an exported model")
    parser.add_argument("enrol", nargs="?", help="first recording")
    parser.add_argument("test", nargs="?", help="second recording")
    parser.add_argument("--trials", default=None, help="score this trial list instead of a pair")
    parser.add_argument("--data_folder", default=None, help="root of the trial list's paths")
    parser.add_argument("--output_folder", default=None, help="where scores.txt and metrics.json go")
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--model", required=True, help="folder written by speechbrain_moco.export")
    parser.add_argument(
        "--threshold", type=float, default=None, help="decision threshold (default: the model's own)"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from speechbrain_moco.cli import check_device, user_errors

    if args.runtime == "onnx":
        from speechbrain_moco.verification.exported import onnx_process_threads

        onnx_process_threads()
    with user_errors("speechbrain_moco.verify"):
        check_device(args.device)
        if args.trials is not None:
            if args.data_folder is None or args.output_folder is None:
                raise ValueError("--trials needs --data_folder and --output_folder")
            m = score_trials(
                args.model, args.trials, args.data_folder, args.output_folder, args.runtime, args.device
            )
            print(
                f"EER: {m['EER']:.2f}% [{m['EER_ci95'][0]:.2f}, {m['EER_ci95'][1]:.2f}] | minDCF(p=0.01): "
                f"{m['minDCF_p0.01']:.4f} | {m['n_trials']} trials | at the model's threshold "
                f"{m['threshold']:.4f}: false accepts {100 * m['false_accept_rate']:.2f}%, misses "
                f"{100 * m['miss_rate']:.2f}%"
            )
            return m
        if args.enrol is None or args.test is None:
            raise ValueError("give two recordings (a.wav b.wav) or --trials TRIALS")
        if args.runtime != "torch":
            raise ValueError(
                "--runtime onnx scores trial lists (--trials); a pair uses the SpeechBrain interface"
            )
        score, threshold, same, llr = verify_pair(
            args.enrol, args.test, args.model, args.threshold, device=args.device
        )
    decision = "same speaker" if same else "different speakers"
    print(f"score {score:.6f} | llr {llr:+.3f} | threshold {threshold:.6f} | {decision}")
    return score, threshold, same


if __name__ == "__main__":
    main()
