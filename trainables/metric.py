"""Metric-learning heads on ResNet-18: triplet (batch-hard) or center loss.

The network maps an image to an L2-normalized embedding. Training loss
(``metric_loss``):
    triplet  batch-hard triplet loss (Hermans et al., 2017): for each anchor the
             farthest positive and the nearest negative in the batch, margin ``margin``
    center   softmax cross-entropy on a linear head + ``center_lambda`` x center
             loss (Wen et al., 2016): half the squared distance to the class centre
Evaluation is nearest-class-centre: class means of the training embeddings,
then each validation (or test) embedding takes the nearest mean; top-1 is
reported as ``val_accuracy`` and top-5 as ``val_top5_accuracy``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hpsearch.trainables.resnet import resnet

TASK = "classification"


class EmbeddingNet(nn.Module):
    def __init__(self, *, in_channels: int, num_classes: int, embedding_dim: int = 64,
                 base_width: int = 64, stem: str = "cifar") -> None:
        super().__init__()
        backbone = resnet("resnet18", in_channels=in_channels, num_classes=embedding_dim,
                          base_width=base_width, stem=stem)
        self.backbone = backbone  # its final Linear is the embedding layer
        self.classifier = nn.Linear(embedding_dim, num_classes)  # used by the center loss only
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.backbone(x), dim=1)


def build(config: dict, data_info: dict) -> nn.Module:
    return EmbeddingNet(in_channels=data_info["in_channels"], num_classes=data_info["num_classes"],
                        embedding_dim=int(config.get("embedding_dim", 64)),
                        base_width=int(config.get("base_width", 64)),
                        stem=config.get("stem", "cifar"))


def batch_hard_triplet(emb: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    dist = torch.cdist(emb, emb)
    same = y[:, None] == y[None, :]
    hardest_pos = (dist * same).max(1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(hardest_neg)  # anchors whose class fills the whole batch have none
    losses = F.relu(hardest_pos - hardest_neg + margin)
    return losses[valid].mean() if valid.any() else emb.sum() * 0.0


def training_loss(model: EmbeddingNet, emb: torch.Tensor, y: torch.Tensor, config: dict):
    kind = config.get("metric_loss", "triplet")
    if kind == "triplet":
        return batch_hard_triplet(emb, y, float(config.get("margin", 0.2)))
    if kind == "center":
        center = 0.5 * (emb - model.centers[y]).pow(2).sum(1).mean()
        ce = F.cross_entropy(model.classifier(emb), y,
                             label_smoothing=float(config.get("label_smoothing", 0.0)))
        return ce + float(config.get("center_lambda", 0.01)) * center
    raise ValueError(f"metric_loss must be triplet or center, got {kind!r}")


@torch.inference_mode()
def _embed(model, x, device, batch_size=512):
    return torch.cat([model(x[i:i + batch_size].to(device)).float()
                      for i in range(0, len(x), batch_size)])


@torch.inference_mode()
def evaluate(model: EmbeddingNet, x, y, *, reference, device, config: dict) -> dict:
    """Nearest-class-centre accuracy (top-1, top-5) against training embeddings."""
    model.eval()
    ref_x, ref_y = reference
    ref = _embed(model, ref_x, device)
    k = int(ref_y.max()) + 1
    centers = torch.stack([ref[ref_y.to(device) == c].mean(0) for c in range(k)])
    emb = _embed(model, x, device)
    dist = torch.cdist(emb, centers)
    ranked = dist.argsort(1).cpu()
    pred = ranked[:, 0]
    top5 = (ranked[:, :5] == y[:, None]).any(1).float().mean().item()
    loss = training_loss(model, emb, y.to(device), config).item()
    return {"loss": loss, "accuracy": (pred == y).float().mean().item(), "top5_accuracy": top5,
            "predictions": pred}
