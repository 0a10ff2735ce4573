"""Running a corpus preparation inside a (possibly multi-process) recipe.

A preparation (``data_prep.<corpus>_prepare.prepare_<corpus>``, named by a recipe's
``prepare_data``) writes its manifests once, on the main process; every process then
asks it for the paths (``skip_prep=True``). Its outputs name the ``$data_root`` of the
manifests and the trial lists it wrote, if any.
"""

from speechbrain.utils.distributed import run_on_main


def run_preparation(prepare_fn, data_folder, save_folder, verification_file=None):
    """Prepare a corpus on the main process; return ``(outputs, trials)`` on every process.

    ``trials`` is the trial list to score at the end of training: the first (by name)
    ``trials*`` output the preparation wrote or resolved (a converted official list,
    a generated one, or ``verification_file``), ``None`` when there is none.

    Example
    -------
    >>> def prep(data_folder, save_folder, verification_file=None, skip_prep=False):
    ...     return {"train": save_folder + "/train.csv", "trials": verification_file,
    ...             "data_root": data_folder}
    >>> run_preparation(prep, "/corpus", "/out", "/corpus/trials.txt")[1]
    '/corpus/trials.txt'
    """
    kwargs = {"data_folder": data_folder, "save_folder": save_folder, "verification_file": verification_file}
    run_on_main(prepare_fn, kwargs=kwargs)
    outputs = prepare_fn(**kwargs, skip_prep=True)
    lists = [outputs[k] for k in sorted(outputs) if k.startswith("trials") and outputs[k]]
    return outputs, (lists[0] if lists else None)
