"""Shared recipe logic of the MoCo training job (``verification`` has the scoring job).

Every recipe's ``train_moco.py`` calls these, so no recipe copies code. The flow
follows SpeechBrain's recipes: parse arguments -> DDP init -> hyperparameters ->
data prep on the main process -> datasets -> experiment directory -> Brain -> fit ->
evaluate.
"""

import importlib
import json
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_moco.brain import MoCoBrain
from speechbrain_moco.dataio import dataio_prep
from speechbrain_moco.evaluation import evaluate_trials, resolve_trials
from speechbrain_moco.scoring import stats_embedding

logger = get_logger(__name__)


def load_hparams(argv):
    """Parse a recipe command line and load its yaml (DDP group included)."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    return hparams_file, run_opts, overrides, hparams


def ensure_corpus(hparams):
    """Generate (once) the embedded synthetic corpus and return its folder."""
    from data_prep.synthetic_corpus import default_workers, generate_corpus

    folder = hparams["embedded_corpus_folder"]
    # synthesis is CPU-bound numpy work; the output does not depend on the process count
    run_on_main(generate_corpus, kwargs={"out_folder": folder, "seed": hparams["corpus_seed"],
                                         "num_workers": default_workers()})
    return folder


def brain_embed_fn(brain):
    """Embedding function of a trained Brain's query encoder (eval mode)."""
    brain.modules.eval()
    return brain.encode


def stats_embed_fn(compute_features, mean_var_norm):
    """Fbank mean+std statistics: the no-training baseline."""

    def fn(wavs, lens):
        feats = mean_var_norm(compute_features(wavs), lens)
        return stats_embedding(feats, lens)

    return fn


def embedded_schedule(hparams, overrides):
    r"""The main job's schedule on the embedded corpus.

    ``embedded_corpus_epochs`` (when the yaml has it) replaces ``number_of_epochs``
    unless ``--number_of_epochs`` is on the command line; the epoch counter and
    every schedule that reads ``number_of_epochs`` follow. Returns the overrides
    with it added, so the run's saved ``hyperparams.yaml`` says what ran.

    Example
    -------
    >>> from speechbrain.utils.epoch_loop import EpochCounter
    >>> hp = {"number_of_epochs": 40, "embedded_corpus_epochs": 12, "epoch_counter": EpochCounter(40)}
    >>> embedded_schedule(hp, "lr: 0.1"), hp["number_of_epochs"], hp["epoch_counter"].limit
    ('lr: 0.1\nnumber_of_epochs: 12', 12, 12)
    >>> hp = {"number_of_epochs": 5, "embedded_corpus_epochs": 12, "epoch_counter": EpochCounter(5)}
    >>> embedded_schedule(hp, "number_of_epochs: 5"), hp["epoch_counter"].limit
    ('number_of_epochs: 5', 5)
    """
    import yaml

    epochs = hparams.get("embedded_corpus_epochs")  # overrides: the yaml string of load_hparams
    if not epochs or "number_of_epochs" in (yaml.safe_load(overrides or "") or {}):
        return overrides
    hparams["number_of_epochs"] = epochs
    hparams["epoch_counter"].limit = epochs
    return (overrides + "\n" if overrides else "") + f"number_of_epochs: {epochs}"


def prepare_experiment(hparams, hparams_file, overrides):
    """Corpus (embedded if no ``data_folder``), experiment folder and manifests.

    ``prepare_data`` is the corpus' prep function (folder, VoxCeleb, CN-Celeb,
    LibriSpeech ...). Returns the trial list to score at the end: one the prep
    wrote (``trials*`` outputs, e.g. converted official lists or generated
    ones), else ``verification_file``, else None.
    """
    embedded = hparams["data_folder"] is None
    if embedded:
        if hparams["embedded_corpus_folder"] is None:
            raise ValueError("--data_folder is required by this recipe")
        hparams["data_folder"] = ensure_corpus(hparams)
        if hparams["verification_file"] is None:
            hparams["verification_file"] = "trials.txt"  # held-out speakers of the corpus
        overrides = embedded_schedule(hparams, overrides)
    elif not os.path.isdir(hparams["data_folder"]):
        raise FileNotFoundError(f"data_folder does not exist: {hparams['data_folder']}")
    trials = resolve_trials(hparams["data_folder"], hparams["verification_file"])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    if embedded:  # after the experiment folder exists, so that it reaches log.txt
        logger.info("no --data_folder given: the embedded synthetic corpus in %s, %d epochs",
                    hparams["data_folder"], hparams["number_of_epochs"])
    prep_kwargs = {"data_folder": hparams["data_folder"], "save_folder": hparams["manifest_folder"],
                   "verification_file": trials}
    run_on_main(hparams["prepare_data"], kwargs=prep_kwargs)
    outputs = hparams["prepare_data"](**prep_kwargs, skip_prep=True)  # paths only, every rank
    written = sorted(path for key, path in outputs.items() if key.startswith("trials"))
    trials = written[0] if written else trials
    if if_main_process():  # what verify.py needs to find the training data again
        with open(os.path.join(hparams["output_folder"], "run_info.json"), "w", encoding="utf-8") as f:
            json.dump({"data_folder": os.path.abspath(hparams["data_folder"]),
                       "train_annotation": os.path.abspath(hparams["train_annotation"]),
                       "trials": trials}, f, indent=2)
    hparams["extra_sources"] = [prepare_source(hparams, i, src)
                                for i, src in enumerate(hparams["extra_sources"] or [])]
    return trials


SOURCE_PREPS = {
    "folder": "data_prep.folder_prepare.prepare_folder",
    "voxceleb": "data_prep.voxceleb_prepare.prepare_voxceleb",
    "librispeech": "data_prep.librispeech_prepare.prepare_librispeech",
    "cnceleb": "data_prep.cnceleb_prepare.prepare_cnceleb",
}


def prepare_source(hparams, index, source):
    """Resolve one ``extra_sources`` entry.

    ``{data_folder, [annotation], [name], [weight], [prep]}``: without
    ``annotation`` the folder is prepared by ``prep`` (``folder``, ``voxceleb``,
    ``librispeech`` or ``cnceleb``; default: the recipe's own prep function)
    and its training manifest is used. Speaker labels are never used.
    """
    if "data_folder" not in source:
        raise ValueError(f"extra_sources[{index}] needs a data_folder: {source}")
    resolved = {"name": source.get("name") or f"source{index + 1}",
                "weight": float(source.get("weight", 1.0)),
                "data_folder": source["data_folder"], "annotation": source.get("annotation")}
    if resolved["annotation"] is None:
        save = os.path.join(hparams["manifest_folder"], resolved["name"])
        prep = hparams["prepare_data"]
        if source.get("prep") is not None:
            if source["prep"] not in SOURCE_PREPS:
                raise ValueError(f"extra_sources[{index}]: prep must be one of {sorted(SOURCE_PREPS)}")
            module, name = SOURCE_PREPS[source["prep"]].rsplit(".", 1)
            prep = getattr(importlib.import_module(module), name)
        kwargs = {"data_folder": source["data_folder"], "save_folder": save, "verification_file": None}
        run_on_main(prep, kwargs=kwargs)
        resolved["annotation"] = prep(**kwargs, skip_prep=True)["train"]
    return resolved


def train(hparams, run_opts, brain_class=MoCoBrain):
    """Build the Brain from ``hparams`` and fit it on the prepared manifests."""
    datasets = dataio_prep(hparams)
    loader_kwargs = dict(hparams["train_dataloader_options"])
    if datasets["sampler"] is not None:
        loader_kwargs.update(sampler=datasets["sampler"], shuffle=False)
    brain = brain_class(
        modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
        run_opts=run_opts, checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter, datasets["train"], datasets["valid"],
        train_loader_kwargs=loader_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    return brain


def evaluate_run(brain, hparams, trials):
    """Score ``trials`` with the trained encoder and with the Fbank-statistics baseline.

    Writes ``<output_folder>/eval/{scores.txt,metrics.json}`` and the baseline's
    under ``eval/fbank_stats_baseline/``; returns ``(metrics, baseline)``.
    """
    eval_dir = os.path.join(hparams["output_folder"], "eval")
    common = dict(data_folder=hparams["data_folder"], device=brain.device,
                  batch_size=hparams["eval_batch_size"], sample_rate=hparams["sample_rate"])
    history = os.path.join(hparams["output_folder"], "history.jsonl")
    metrics = evaluate_trials(trials, embed_fn=brain_embed_fn(brain), out_dir=eval_dir,
                              history_path=history, **common)
    baseline_fn = stats_embed_fn(brain.modules.compute_features, brain.modules.mean_var_norm)
    baseline = evaluate_trials(trials, embed_fn=baseline_fn,
                               out_dir=os.path.join(eval_dir, "fbank_stats_baseline"), **common)
    return metrics, baseline


def run_moco(argv=None):
    """``python train_moco.py hparams/moco.yaml [--data_folder=ROOT] ...``.

    Returns ``(brain, metrics, baseline)``; the metrics are None without a
    trial list (and on processes other than the main one).
    """
    argv = sys.argv[1:] if argv is None else argv
    hparams_file, run_opts, overrides, hparams = load_hparams(argv)
    trials = prepare_experiment(hparams, hparams_file, overrides)
    brain = train(hparams, run_opts)
    if trials is None or not if_main_process():
        return brain, None, None
    metrics, baseline = evaluate_run(brain, hparams, trials)
    return brain, metrics, baseline


def summary(metrics, baseline=None):
    """One line for the console: EER, minDCF and, if given, the baseline."""
    line = (f"EER: {metrics['EER']:.2f}% | minDCF(p=0.01): {metrics['minDCF_p0.01']:.4f} | "
            f"minDCF(p=0.05): {metrics['minDCF_p0.05']:.4f} | {metrics['n_trials']} trials")
    if baseline is not None:
        line += f" | Fbank mean/std cosine baseline EER: {baseline['EER']:.2f}%"
    return line
