"""Time-series forecaster: a stack of RNN | LSTM | GRU layers, then Linear layers.

Input: ``seq_length`` past steps of every column of the table (the target is
column 0) -> output: the next ``horizon`` values of the target (scaled). With
``residual`` the network predicts the change from the window's last target value
(the naive last-value forecast) and adds it back: an untrained head starts at the
naive forecast, and the search looks for skill over it rather than for the level.
The cell, its size and depth, the head and ``seq_length`` are parameters
(``FORECASTER`` in ``trainables/params.py``, with domains and defaults); the
loss (mse | huber), grad_clip, optimizer, lr ... are the shared loop's.
"""

from __future__ import annotations

import torch
from torch import nn

from hpsearch.trainables.data import series as series_data

TASK = "regression"
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def prepare(data: series_data.Series, config: dict) -> series_data.Windows:
    return series_data.windows(data, int(config.get("seq_length", 14)))


def head(in_features: int, out_features: int, layers: int, hidden: int, dropout: float):
    """``layers`` Linear layers (ReLU and dropout between them)."""
    mods: list[nn.Module] = []
    for _ in range(max(0, layers - 1)):
        mods += [nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout)]
        in_features = hidden
    return nn.Sequential(*mods, nn.Linear(in_features, out_features))


class Forecaster(nn.Module):
    def __init__(self, input_size: int, horizon: int, *, cell: str = "lstm",
                 hidden_size: int = 64, num_layers: int = 3, bidirectional: bool = False,
                 dropout: float = 0.1, head_layers: int = 1, head_hidden: int = 64,
                 residual: bool = False):
        super().__init__()
        self.residual = residual
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0,
                               bidirectional=bidirectional)
        self.hidden_size, self.bidirectional = hidden_size, bidirectional
        self.drop = nn.Dropout(dropout)
        self.head = head(hidden_size * (2 if bidirectional else 1), horizon, head_layers,
                         head_hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        h = self.hidden_size
        last = out[:, -1, :h]  # the forward direction after the whole window
        if self.bidirectional:  # the backward direction after reading back to step 0
            last = torch.cat([last, out[:, 0, h:]], dim=1)
        out = self.head(self.drop(last))
        return out + x[:, -1:, 0] if self.residual else out  # [B, horizon] + [B, 1]


def build(config: dict, data_info: dict) -> nn.Module:
    return Forecaster(
        data_info["input_size"], data_info["horizon"], cell=config.get("cell", "lstm"),
        hidden_size=int(config.get("hidden_size", 64)), num_layers=int(config.get("num_layers", 3)),
        bidirectional=bool(config.get("bidirectional", False)),
        dropout=float(config.get("dropout", 0.1)), head_layers=int(config.get("head_layers", 1)),
        head_hidden=int(config.get("head_hidden", 64)),
        residual=bool(config.get("residual", False)))
