"""The Folder recipes' default corpus: a folder corpus, or the embedded synthetic one.

``prepare_folder_or_embedded`` is the Folder recipes' ``prepare_data``: given a
``data_folder`` it is :func:`data_prep.folder_prepare.prepare_folder`; without one
(the main job, ``python train_moco.py hparams/moco.yaml``) it first generates the
embedded synthetic corpus (:mod:`data_prep.synthetic_corpus`, once, offline, from a
seed) in ``corpus_folder`` and prepares that, with the corpus' own ``trials.txt`` on
its held-out speakers as the list to score.

The two schedules live in the recipe yaml: ``number_of_epochs`` is
:func:`number_of_epochs` of ``data_folder`` (``folder_epochs`` for a given corpus,
``embedded_epochs`` for the embedded one; ``--number_of_epochs=N`` replaces both).

Example
-------
>>> number_of_epochs(None, folder_epochs=40, embedded_epochs=12)
12
>>> number_of_epochs("/data/mine", folder_epochs=40, embedded_epochs=12)
40
"""

import os

from speechbrain.utils.logger import get_logger

from data_prep.folder_prepare import prepare_folder
from data_prep.synthetic_corpus import INFO_FILE, default_workers, generate_corpus

logger = get_logger(__name__)


def number_of_epochs(data_folder, folder_epochs, embedded_epochs):
    """``folder_epochs`` for a corpus given as ``data_folder``, ``embedded_epochs`` without one."""
    return int(embedded_epochs if data_folder is None else folder_epochs)


def prepare_folder_or_embedded(
    data_folder,
    save_folder,
    verification_file=None,
    corpus_folder="results/embedded_corpus",
    corpus_seed=0,
    skip_prep=False,
    **folder_options,
):
    """Prepare ``data_folder``, or generate and prepare the embedded synthetic corpus.

    Arguments
    ---------
    data_folder : str or None
        A ``<root>/<speaker>/**/*.wav|flac`` corpus, or None for the embedded corpus.
    save_folder : str
        Where the manifests go (see :func:`data_prep.folder_prepare.prepare_folder`).
    verification_file : str, optional
        Trial list; for the embedded corpus it defaults to its ``trials.txt``.
    corpus_folder : str
        Where the embedded corpus is generated (skipped when it is already there).
    corpus_seed : int
        Seed of the embedded corpus.
    skip_prep : bool
        Only return the output paths.
    **folder_options
        ``valid_ratio``, ``sample_rate``, ``seed``, ``extensions`` of ``prepare_folder``.

    Returns
    -------
    dict
        ``prepare_folder``'s outputs (``train``, ``valid``, ``test``, ``trials``,
        ``data_root`` ...).
    """
    if data_folder is not None:
        return prepare_folder(
            data_folder, save_folder, verification_file, skip_prep=skip_prep, **folder_options
        )
    if not skip_prep:
        workers = default_workers()
        if not os.path.isfile(os.path.join(corpus_folder, INFO_FILE)):
            logger.info(
                "no --data_folder: generating the embedded synthetic corpus in %s with %d "
                "processes (once; about a minute)",
                corpus_folder,
                workers,
            )
        generate_corpus(corpus_folder, seed=corpus_seed, num_workers=workers)
    return prepare_folder(
        corpus_folder, save_folder, verification_file or "trials.txt", skip_prep=skip_prep, **folder_options
    )
