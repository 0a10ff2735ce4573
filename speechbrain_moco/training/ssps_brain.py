"""``SSPSBrain``: MoCo with self-supervised positive sampling, as sslsv runs it.

A subclass of :class:`~speechbrain_moco.training.MoCoBrain` (moco-v3's ``MoCo_ResNet(MoCo)``):
plain MoCo until ``ssps_start_epoch``; from the epoch before it, each training step writes the
query encoder's embedding (``eval()`` mode, no projector) of every utterance's clean crop to
the reference memory; from ``ssps_start_epoch`` each query's positive is a recent momentum
key of another utterance of its pseudo-class, and the negatives of that utterance are masked
out (:mod:`speechbrain_moco.moco.ssps`). The yaml names the module ``ssps``
(``PositiveSampler``) and the Brain (``recipes/Folder/MoCo/hparams/moco_ssps.yaml``).

Logged each epoch: ``ssps_coverage`` (share of queries given another utterance's key) and,
when the training manifest has speaker ids, ``ssps_same_speaker`` (share of drawn positives
from the query's speaker): reports only, no label enters training.
"""

import zlib

import speechbrain as sb
import torch
import torch.nn.functional as F

from speechbrain_moco.dataio.datasets import utterance_keys, utterance_speakers
from speechbrain_moco.encoder import embed
from speechbrain_moco.moco.distributed import all_gather_nograd
from speechbrain_moco.training.moco_brain import MoCoBrain


class SSPSBrain(MoCoBrain):
    """MoCo whose positives come from other utterances of a pseudo-class (see the module)."""

    step_state_exclude = MoCoBrain.step_state_exclude + ("ssps",)

    def fit(self, epoch_counter, train_set, valid_set=None, *args, **kwargs):
        """SpeechBrain's ``fit``, after sizing the SSPS memories for the training set (before a
        checkpoint restores them) and reading its speakers for the report."""
        if isinstance(train_set, torch.utils.data.DataLoader):
            raise ValueError("SSPS needs the training dataset, not a DataLoader, to index its memory")
        keys = utterance_keys(train_set)
        self.slot_of = {key: i for i, key in enumerate(keys)}
        if len(self.slot_of) != len(keys):
            raise ValueError("SSPS: two training rows share a source and an ID")
        self.fingerprint = zlib.crc32("\n".join(keys).encode())
        ssps = self.modules.ssps
        ref_dim = self.hparams.emb_dim
        ssps.allocate(len(keys), ref_dim, self.embedding_dim(), self.modules.queue.size, self.fingerprint)
        speakers = utterance_speakers(train_set)
        if any(speakers):
            names = {s: i for i, s in enumerate(sorted({s for s in speakers if s}))}
            ssps.speakers = torch.tensor([names.get(s, -1) if s else -1 for s in speakers])
        return super().fit(epoch_counter, train_set, valid_set, *args, **kwargs)

    def on_fit_start(self):
        """SpeechBrain's start (resume included), then a resumed memory must be this training
        set's."""
        super().on_fit_start()
        ssps = self.modules.ssps
        if ssps.reference.shape[0] != len(self.slot_of):
            raise ValueError(
                f"the checkpoint's SSPS memory holds {ssps.reference.shape[0]} utterances, the "
                f"training set {len(self.slot_of)}: the corpus changed since; use a new --output_folder"
            )
        if int(ssps.fingerprint) != self.fingerprint:
            raise ValueError(
                "the checkpoint's SSPS memory lists other utterances (or another order) than the "
                "training set: the corpus changed since; use a new --output_folder"
            )

    def on_stage_start(self, stage, epoch=None):
        """MoCo's start of a stage; a training epoch re-clusters the reference memory when due."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            self.ssps_epoch = epoch
            self.modules.ssps.refresh(epoch)

    def slots(self, batch):
        """Rows of the batch's utterances in the SSPS memories."""
        return torch.tensor([self.slot_of[f"{s}/{u}"] for s, u in zip(batch.source, batch.id)])

    @torch.no_grad()
    def reference(self, wavs, lengths):
        """Reference embeddings of clean crops: the query encoder in ``eval()`` mode (batch
        norm and the feature normaliser frozen), without projector, L2-normalised."""
        modules = (self.modules.embedding_model, self.modules.mean_var_norm)
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        try:
            feats = self.features(wavs, lengths, sb.Stage.VALID)
            return F.normalize(embed(self.modules.embedding_model, feats, lengths), dim=1)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)

    def positive_pairs(self, batch, keys, clean, stage):
        """From ``ssps_start_epoch``: drawn positives and the masks of their utterances; from
        the epoch before it, also the clean view 1's reference embeddings."""
        epoch = getattr(self, "ssps_epoch", None)
        ssps = self.modules.ssps
        if stage != sb.Stage.TRAIN or not ssps.filling(epoch):
            return keys, {}, {}
        slots = self.slots(batch).to(self.device)
        half = clean[0].shape[0] // 2
        extra = {"slots": slots, "reference": self.reference(clean[0][:half], clean[1][:half])}
        if not ssps.active():
            return keys, {}, extra
        gen = torch.Generator().manual_seed(self.step_seed("ssps"))
        positives, masks = {}, {}
        for view, key in keys.items():
            positives[view], drawn = ssps.positives(slots, key, gen)
            masks[view] = ssps.negative_mask(slots, drawn)
        return positives, masks, extra

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """MoCo's update and enqueue; then the step's keys join the positive queue (their
        utterances mirrored for the negative queue) and its reference embeddings the memory
        (every rank's rows: the ranks keep the same memories)."""
        negative_ptr = int(self.modules.queue.ptr)
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if "slots" in outputs:
            slots = all_gather_nograd(outputs["slots"])
            self.modules.ssps.push(slots, all_gather_nograd(outputs["keys"]), negative_ptr)
            self.modules.ssps.write_reference(slots, all_gather_nograd(outputs["reference"]))

    def epoch_meta(self):
        """MoCo's epoch meta with SSPS coverage and same-speaker share while it samples."""
        meta = super().epoch_meta()
        if self.modules.ssps.active():
            meta.update(self.modules.ssps.epoch_report())
        return meta
