"""The end of a training recipe: embed with the trained encoder and score a trial list."""

import os

import speechbrain as sb

from speechbrain_moco.encoder import embed
from speechbrain_moco.moco.momentum import unwrap
from speechbrain_moco.verification.evaluate import evaluate_trials
from speechbrain_moco.verification.metrics import metrics_line
from speechbrain_moco.verification.statistics import stats_embed_fn


class ScoringMixin:
    """What a Brain of the toolkit does once trained (``EmbeddingBrain`` mixes it in):
    ``encode`` waveforms, ``score_trials`` of a list, and ``finish`` a recipe with a
    console line. Uses the Brain's ``features``, ``modules`` and ``hparams``."""

    def encode(self, wavs, lengths):
        """Encoder embeddings (B, D) of waveforms (no head, no classifier)."""
        feats = self.features(wavs, lengths, sb.Stage.TEST)
        # the plain encoder: under DDP only the main process scores, and calling the
        # DDP-wrapped module on one rank would wait for the others for ever
        return embed(unwrap(self.modules.embedding_model), feats, lengths)

    def score_trials(self, trials, data_folder):
        """Score a trial list with the trained encoder (the end of a training recipe).

        Writes ``<output_folder>/eval/`` (``scores.txt``, ``metrics.json``, plots); with
        ``stats_baseline: True``, also the Fbank mean+std statistics of the same front-end
        (no training: what the encoder has to beat) in ``eval/fbank_stats_baseline/``.
        Returns ``(metrics, baseline_metrics or None)``.
        """
        eval_dir = os.path.join(self.hparams.output_folder, "eval")
        common = dict(
            device=self.device, batch_size=self.hparams.eval_batch_size, sample_rate=self.hparams.sample_rate
        )
        self.modules.eval()
        history = os.path.join(self.hparams.output_folder, "history.jsonl")
        system = "/".join(os.path.normpath(self.hparams.output_folder).split(os.sep)[-2:])
        metrics = evaluate_trials(
            trials, data_folder, self.encode, eval_dir, history_path=history, system=system, **common
        )
        baseline = None
        if self.hparams.stats_baseline:
            stats = stats_embed_fn(self.modules.compute_features, self.modules.mean_var_norm)
            out = os.path.join(eval_dir, "fbank_stats_baseline")
            baseline = evaluate_trials(trials, data_folder, stats, out, system="Fbank mean+std", **common)
        return metrics, baseline

    def finish(self, trials, data_folder):
        """The end of a training recipe: score ``trials`` (:meth:`score_trials`) when there
        is a list; returns the console line, which always says how the run ended."""
        if trials is not None:
            return metrics_line(*self.score_trials(trials, data_folder))
        return (
            f"trained {self.hparams.epoch_counter.current} epochs, checkpoints in "
            f"{self.hparams.save_folder}; no trial list was given: score one with verify.py "
            f"--pretrain_path={self.hparams.output_folder}"
        )
