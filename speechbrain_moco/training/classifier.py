"""The speaker classifier of AAM-softmax training: SpeechBrain's cosine classifier, or its
sub-centre form (Deng et al. 2020, sub-center ArcFace) for noisy pseudo-labels.

With ``K`` sub-centres a class has ``K`` weight vectors and its cosine is the largest of
the ``K``: a cluster that mixes two speakers, or holds a mislabelled utterance, can keep
them on a sub-centre of their own instead of pulling the dominant one towards them.
"""

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import Classifier


class SubcenterClassifier(torch.nn.Module):
    """Cosine logits ``(B, 1, C)``: for each class the largest cosine of its ``subcenters``
    L2-normalised weight vectors with the L2-normalised embedding.

    Example
    -------
    >>> head = SubcenterClassifier(input_size=4, out_neurons=3, subcenters=2)
    >>> head(torch.randn(5, 1, 4)).shape
    torch.Size([5, 1, 3])
    """

    def __init__(self, input_size, out_neurons, subcenters=3):
        super().__init__()
        self.out_neurons, self.subcenters = int(out_neurons), int(subcenters)
        self.weight = torch.nn.Parameter(torch.empty(self.out_neurons * self.subcenters, input_size))
        torch.nn.init.xavier_uniform_(self.weight)

    def forward(self, x):
        cos = F.linear(F.normalize(x.squeeze(1)), F.normalize(self.weight))
        return cos.view(x.shape[0], self.out_neurons, self.subcenters).amax(dim=2).unsqueeze(1)


def speaker_classifier(input_size, out_neurons, subcenters=1):
    """SpeechBrain's ECAPA ``Classifier`` (``subcenters`` 1) or a :class:`SubcenterClassifier`.

    Example
    -------
    >>> type(speaker_classifier(8, 4)).__name__, type(speaker_classifier(8, 4, 3)).__name__
    ('Classifier', 'SubcenterClassifier')
    """
    if int(subcenters) < 1:
        raise ValueError(f"aam_subcenters must be >= 1, got {subcenters}")
    if int(subcenters) == 1:
        return Classifier(input_size=input_size, out_neurons=out_neurons)
    return SubcenterClassifier(input_size, out_neurons, subcenters)
