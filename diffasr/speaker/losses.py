"""Training objectives on top of the encoder's embeddings.

- AAMHead: SpeechBrain's ECAPA Classifier (cosine to speaker prototypes) with
  LogSoftmaxWrapper(AdditiveAngularMargin), the loss of SpeechBrain's VoxCeleb recipe.
- batch_hard_triplet_loss: the seed's contrastive objective (anchor/positive/negative,
  Euclidean distance, margin 1) with triplets mined inside the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper


class AAMHead(torch.nn.Module):
    """Embeddings [B, D] + speaker indices [B] -> AAM-softmax loss (mean over the batch)."""

    def __init__(self, embedding_dim: int, num_speakers: int, margin: float, scale: float):
        super().__init__()
        self.classifier = Classifier(input_size=embedding_dim, out_neurons=num_speakers)
        self.criterion = LogSoftmaxWrapper(AdditiveAngularMargin(margin=margin, scale=scale))

    def forward(self, embeddings: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        cosines = self.classifier(embeddings.unsqueeze(1))  # [B, 1, num_speakers]
        return self.criterion(cosines, speakers.unsqueeze(1))


def mine_batch_hard(embeddings: torch.Tensor, labels: torch.Tensor):
    """(anchor, positive, negative) indices: for each anchor with a positive in the batch,
    its farthest same-speaker and its nearest other-speaker embedding ("batch hard",
    Hermans et al. 2017). Anchors without a positive or a negative are skipped."""
    with torch.no_grad():
        dist = torch.cdist(embeddings, embeddings)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask, neg_mask = same & ~eye, ~same
        valid = pos_mask.any(1) & neg_mask.any(1)
        positive = dist.masked_fill(~pos_mask, float("-inf")).argmax(1)
        negative = dist.masked_fill(~neg_mask, float("inf")).argmin(1)
        anchor = torch.nonzero(valid).squeeze(1)
    return anchor, positive[anchor], negative[anchor]


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0,
                            normalize: bool = True) -> torch.Tensor:
    """mean max(0, |a - p| - |a - n| + margin) over the batch-hard triplets.

    With `normalize`, embeddings are put on the unit sphere first; otherwise the network
    could meet any margin just by scaling its outputs up.
    """
    if normalize:
        embeddings = F.normalize(embeddings, dim=-1)
    anchor, positive, negative = mine_batch_hard(embeddings, labels)
    if len(anchor) == 0:
        raise ValueError("no anchor in the batch has both a positive and a negative")
    loss_fn = torch.nn.TripletMarginLoss(margin=margin, p=2)
    return loss_fn(embeddings[anchor], embeddings[positive], embeddings[negative])
