"""SpeechBrain datasets of a manifest: two crops per utterance (MoCo), one labelled crop
(supervised training), or whole utterances (embedding extraction).
"""

import speechbrain as sb
import torch

from speechbrain_moco.dataio.audio import load_audio


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


def manifest_durations(dataset):
    """Durations (s) of every row of a (wrapped / concatenated) manifest dataset."""
    inner = getattr(dataset, "dataset", dataset)
    parts = inner.datasets if isinstance(inner, torch.utils.data.ConcatDataset) else [inner]
    return [float(row["duration"]) for part in parts for row in part.data.values()]


def stack_views(batch):
    """(2B, T) waveforms of both views and their relative lengths."""
    v1, v2 = batch.view1, batch.view2
    return torch.cat([v1.data, v2.data]), torch.cat([v1.lengths, v2.lengths])
