"""A dense autoencoder whose encoder is then reused by a classifier head.

Stage 1 (``pretrain``, run by the shared loop before the first epoch):
the encoder-decoder learns to reconstruct training images under MSE for
``ae_epochs`` epochs. Stage 2 (the ordinary epochs): the classifier head on the
pretrained encoder, with the encoder frozen or fine-tuned (``freeze_encoder``).
Both stages are reported: ``ae_train_loss`` / ``ae_val_loss`` join the first
epoch's metrics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

TASK = "classification"


class AutoencoderClassifier(nn.Module):
    def __init__(self, *, in_features: int, num_classes: int, hidden: int = 256,
                 code: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden),
                                     nn.ReLU(inplace=True), nn.Linear(hidden, code),
                                     nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(inplace=True),
                                     nn.Linear(hidden, in_features))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(code, num_classes))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build(config: dict, data_info: dict) -> nn.Module:
    n = data_info["in_channels"] * data_info["image_size"] ** 2
    return AutoencoderClassifier(in_features=n, num_classes=data_info["num_classes"],
                                 hidden=int(config.get("hidden", 256)),
                                 code=int(config.get("code", 64)),
                                 dropout=float(config.get("dropout", 0.2)))


def pretrain(model: AutoencoderClassifier, data, config: dict, device: torch.device) -> dict:
    """Stage 1: reconstruction under MSE. Returns the stage's metrics."""
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    opt = torch.optim.Adam(params, lr=float(config.get("ae_lr", 1e-3)))
    x_train, x_val = data.train[0], data.val[0]
    bs = int(config.get("batch_size", 64))
    gen = torch.Generator().manual_seed(int(config.get("seed", 0)))
    train_loss = float("nan")
    for _ in range(int(config.get("ae_epochs", 3))):
        model.train()
        total = 0.0
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(x_train), bs):
            xb = x_train[order[i:i + bs]].to(device)
            loss = F.mse_loss(model.reconstruct(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        train_loss = total / len(x_train)
    model.eval()
    with torch.inference_mode():
        val_loss = F.mse_loss(model.reconstruct(x_val.to(device)), x_val.to(device)).item()
    if config.get("freeze_encoder", False):
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    return {"ae_train_loss": train_loss, "ae_val_loss": val_loss}
