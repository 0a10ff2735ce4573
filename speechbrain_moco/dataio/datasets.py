"""SpeechBrain datasets of a manifest: two crops per utterance (MoCo), one labelled crop
(supervised training), or whole utterances (embedding extraction).
"""

import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger

from speechbrain_moco.dataio.audio import load_audio

logger = get_logger(__name__)


def two_view_dataset(csv_path, data_folder, two_crops, source="main"):
    """DynamicItemDataset of a manifest yielding ``id``, ``view1``, ``view2`` and ``source``.

    ``source`` names the corpus the rows come from (constant over the dataset), so
    the trainer can count the crops drawn from each source of a multi-corpus run.
    """
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements={"data_root": data_folder}
    )

    # plain functions, not a generator: an unreadable file must leave the
    # pipeline usable for the next item (SkippingDataset relies on it)
    @sb.utils.data_pipeline.takes("id", "wav", "start", "stop")
    @sb.utils.data_pipeline.provides("views")
    def crops(uid, wav, start, stop):
        return two_crops(wav, start, stop, uid)

    @sb.utils.data_pipeline.takes("views")
    @sb.utils.data_pipeline.provides("view1")
    def first(views):
        return views[0]

    @sb.utils.data_pipeline.takes("views")
    @sb.utils.data_pipeline.provides("view2")
    def second(views):
        return views[1]

    @sb.utils.data_pipeline.takes("id")
    @sb.utils.data_pipeline.provides("source")
    def source_name(_):
        return source

    for item in (crops, first, second, source_name):
        data.add_dynamic_item(item)
    data.set_output_keys(["id", "view1", "view2", "source"])
    data.source = source  # read by utterance_keys
    return data


def labelled_crop_dataset(csv_path, data_folder, crops, label_encoder):
    """DynamicItemDataset of one random crop ``sig`` and ``spk_id_encoded`` per row.

    ``crops`` is a ``TwoCrops(n_views=1)``; ``label_encoder`` a fitted
    SpeechBrain ``CategoricalEncoder`` (a speaker it does not know is an error
    naming the manifest).
    """
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements={"data_root": data_folder}
    )

    @sb.utils.data_pipeline.takes("id", "wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def crop(uid, wav, start, stop):
        return crops(wav, start, stop, uid)[0]

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def label(spk_id):
        if spk_id not in label_encoder.lab2ind:
            raise KeyError(f"{csv_path}: speaker {spk_id!r} is not among the training speakers")
        return torch.LongTensor([label_encoder.lab2ind[spk_id]])

    data.add_dynamic_item(crop)
    data.add_dynamic_item(label)
    data.set_output_keys(["id", "sig", "spk_id_encoded"])
    return data


def utterance_dataset(csv_path, data_folder, sample_rate):
    """DynamicItemDataset yielding ``id`` and the full segment ``sig``."""
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements={"data_root": data_folder}
    )

    @sb.utils.data_pipeline.takes("wav", "start", "stop")
    @sb.utils.data_pipeline.provides("sig")
    def read(wav, start, stop):
        stop = int(stop) if int(stop) > 0 else None
        return load_audio(wav, sample_rate, start=int(start), stop=stop)

    data.add_dynamic_item(read)
    data.set_output_keys(["id", "sig"])
    return data


def validation_manifest(path):
    """``path``, or None when it is None or lists no utterance (``valid_ratio: 0``): the
    recipes then train without validation and checkpoint after each training epoch."""
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        if sum(1 for line in f if line.strip()) > 1:
            return path
    logger.info("%s lists no utterance: training without validation", path)
    return None


def manifest_durations(dataset):
    """Durations (s) of every row of a (wrapped / concatenated) manifest dataset."""
    inner = getattr(dataset, "dataset", dataset)
    parts = inner.datasets if isinstance(inner, torch.utils.data.ConcatDataset) else [inner]
    return [float(row["duration"]) for part in parts for row in part.data.values()]


def utterance_keys(dataset):
    """``"<source>/<id>"`` of every row of a (wrapped / concatenated) two-view dataset, in
    order: the keys of a per-utterance memory (a batch's are ``batch.source`` and ``batch.id``)."""
    inner = getattr(dataset, "dataset", dataset)
    parts = inner.datasets if isinstance(inner, torch.utils.data.ConcatDataset) else [inner]
    return [f"{getattr(part, 'source', 'main')}/{uid}" for part in parts for uid in part.data_ids]


def utterance_speakers(dataset):
    """The ``spk_id`` of every row of a two-view dataset, in :func:`utterance_keys`' order
    (``""`` where the manifest gives none): for reports (e.g. how often SSPS draws a
    positive of the query's speaker), never for label-free training."""
    inner = getattr(dataset, "dataset", dataset)
    parts = inner.datasets if isinstance(inner, torch.utils.data.ConcatDataset) else [inner]
    return [str(part.data[uid].get("spk_id", "") or "") for part in parts for uid in part.data_ids]


def stack_views(batch):
    """(2B, T) waveforms of both views and their relative lengths."""
    v1, v2 = batch.view1, batch.view2
    return torch.cat([v1.data, v2.data]), torch.cat([v1.lengths, v2.lengths])


def drop_short(dataset, min_seconds, report_path=None):
    """``dataset`` without its rows shorter than ``min_seconds`` (manifest ``duration``).

    MoCo's two views of an utterance shorter than one crop would share their samples
    (the crop is tiled from it): such utterances are left out of MoCo training instead,
    listed with their duration in ``report_path`` and counted in the log. Returns
    ``(dataset, n_left_out)``.
    """
    short = [
        (uid, float(dataset.data[uid]["duration"]))
        for uid in dataset.data_ids
        if float(dataset.data[uid]["duration"]) < min_seconds
    ]
    if not short:
        return dataset, 0
    if report_path is not None:
        with open(report_path, "w", encoding="utf-8") as f:
            f.writelines(f"{uid}\t{seconds:.3f}\n" for uid, seconds in short)
    logger.warning(
        "%d utterance(s) shorter than %.2f s left out of MoCo training (two views would share "
        "their samples)%s",
        len(short),
        min_seconds,
        f"; listed in {report_path}" if report_path else "",
    )
    kept = dataset.filtered_sorted(key_test={"duration": lambda d: float(d) >= min_seconds})
    kept.source = getattr(dataset, "source", "main")
    return kept, len(short)
