"""The inference interface of an exported model: SpeechBrain's ``SpeakerRecognition``
deciding at the model's own operating point.

SpeechBrain's ``SpeakerRecognition.verify_files`` always decides at cosine 0.25. An
exported folder (``python -m speechbrain_moco.export``) states its decision threshold,
score calibration and embedding normaliser in its ``hyperparams.yaml``; this class
reads them. The file is copied into every exported folder, so SpeechBrain alone loads
it, with no hub access and without this package installed::

    from speechbrain.inference.interfaces import foreign_class
    model = foreign_class(source=DIR, pymodule_file="interface.py",
                          classname="MoCoSpeakerRecognition", savedir=DIR)
    score, same = model.verify_files("a.wav", "b.wav")   # same: score > the model's threshold
    llr = model.llr(score)                               # calibrated log-likelihood ratio

(or ``MoCoSpeakerRecognition.from_hparams(source=DIR, savedir=DIR)`` with this package).
It depends on SpeechBrain and torch only.
"""

import torch
from speechbrain.inference.speaker import SpeakerRecognition


class MoCoSpeakerRecognition(SpeakerRecognition):
    """``SpeakerRecognition`` whose decisions use the exported ``threshold``.

    The yaml of the folder holds ``threshold`` (cosine; accept when the score is
    above it), ``calibration`` (``scale``, ``offset``: ``llr = scale * cosine +
    offset``) and ``mean_var_norm_emb`` (the mean training embedding, subtracted by
    ``encode_batch(normalize=True)``). Scores are plain cosines of the embeddings, as
    the recipes' ``scores.txt`` (embeddings of whole files, never padded).
    """

    HPARAMS_NEEDED = ["threshold", "calibration"]

    @property
    def threshold(self):
        """The decision threshold of the exported operating point (a cosine)."""
        return float(self.hparams.threshold)

    def llr(self, score):
        """Calibrated log-likelihood ratio of a cosine score (tensor or float)."""
        cal = self.hparams.calibration
        return float(cal["scale"]) * score + float(cal["offset"])

    def encode_batch(self, wavs, wav_lens=None, normalize=False):
        """Embeddings ``(B, 1, D)`` or ``(B, D)``, as the encoder returns them; with
        ``normalize=True`` the mean training embedding is subtracted."""
        emb = super().encode_batch(wavs, wav_lens, normalize=False)
        if normalize:
            mean = self.hparams.mean_var_norm_emb.glob_mean.to(emb.device)
            emb = emb - mean
        return emb

    @torch.no_grad()
    def verify_batch(self, wavs1, wavs2, wav1_lens=None, wav2_lens=None, threshold=None):
        """``(cosine scores, decisions)``: same speaker when the score exceeds
        ``threshold`` (default: the exported one)."""
        threshold = self.threshold if threshold is None else threshold
        emb1 = self.encode_batch(wavs1, wav1_lens)
        emb2 = self.encode_batch(wavs2, wav2_lens)
        score = self.similarity(emb1, emb2)
        return score, score > threshold

    def verify_files(self, path_x, path_y, threshold=None, **kwargs):
        """``(score, decision)`` of two audio files, each embedded whole."""
        batch_x = self.load_audio(path_x, **kwargs).unsqueeze(0)
        batch_y = self.load_audio(path_y, **kwargs).unsqueeze(0)
        score, decision = self.verify_batch(batch_x, batch_y, threshold=threshold)
        return score[0], decision[0]

    def score_files(self, path_x, path_y, **kwargs):
        """The cosine score of two files as a float."""
        return float(self.verify_files(path_x, path_y, **kwargs)[0].reshape(-1)[0])
