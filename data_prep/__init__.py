"""Corpus preparation: one ``<corpus>_prepare.py`` per corpus, audio folders -> manifest CSVs
(the contract is in :mod:`speechbrain_moco.dataio.manifest`).

Every ``prepare_<corpus>(data_folder, save_folder, verification_file=None, ...,
skip_prep=False)`` returns a dict of its outputs: ``train`` and ``valid`` / ``dev``
manifests, ``trials*`` (the trial lists to score, when it has them) and ``data_root``
(the ``$data_root`` of its manifests). ``PREPS`` names them for a recipe's
``extra_sources`` (``prep: voxceleb``).
"""

import importlib

PREPS = {
    "folder": "data_prep.folder_prepare.prepare_folder",
    "voxceleb": "data_prep.voxceleb_prepare.prepare_voxceleb",
    "librispeech": "data_prep.librispeech_prepare.prepare_librispeech",
    "cnceleb": "data_prep.cnceleb_prepare.prepare_cnceleb",
}


def require_data_folder(data_folder):
    """Raise a clear error when a preparation gets no corpus root.

    Example
    -------
    >>> require_data_folder(None)
    Traceback (most recent call last):
    ...
    FileNotFoundError: --data_folder is required (the corpus root)
    """
    if data_folder is None or (isinstance(data_folder, (list, tuple)) and not data_folder):
        raise FileNotFoundError("--data_folder is required (the corpus root)")
    return data_folder


def prep_function(name):
    """The preparation function registered as ``name`` in ``PREPS``.

    Example
    -------
    >>> prep_function("folder").__name__
    'prepare_folder'
    """
    if name not in PREPS:
        raise ValueError(f"unknown corpus preparation {name!r}; one of {sorted(PREPS)}")
    module, func = PREPS[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), func)
