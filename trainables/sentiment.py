"""Sentiment classifiers over token ids: the course's baseline and improved LSTMs.

Both read packed sequences, so padding costs no recurrent compute: each layer
is one (possibly bidirectional) RNN | LSTM | GRU run on a ``PackedSequence``,
with dropout after every layer (the baseline's "dropout after each LSTM layer").
A pooling step turns the per-token outputs into one vector:

    last        the final state of each direction (forward at the last real token,
                backward at the first)
    mean, max   over the real tokens only
    attention   additive attention (v^T tanh(W h_t)), masked softmax over real tokens;
                ``attend(x)`` also returns the per-token weights for the report

``sentiment_lstm`` (``build_baseline``): Embedding -> ``num_layers`` >= 3 LSTM
layers -> Linear -> softmax over the classes (for two classes the same model as
one sigmoid unit). ``sentiment`` (``build``) adds the choices: ``cell``,
``bidirectional``, ``pooling``, and ``design``, the course reports' fixed
designs: rnn64, rnn256 (simple RNN), lstm1, lstm2, bilstm1. Both take
pretrained vectors (``embeddings: glove.6B.100d``, fetched once by
``trainables.data.vectors``, or ``embeddings: <GloVe/word2vec text file>``),
whose size sets the embedding's, with ``freeze_embeddings``.

Text preparation (per trial, cached per worker): the tokenizer, vocabulary and
truncation length are parameters too. All of them, with domains and defaults:
``SENTIMENT`` and ``SENTIMENT_LSTM`` in ``trainables/params.py``.

``portable()`` returns the same network without packing (length-aware reversal
for the backward direction), which ``torch.export`` can trace; its outputs equal
the packed model's (tested).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from hpsearch.trainables.data import text as text_data
from hpsearch.trainables.data import vectors

TASK = "classification"
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
DESIGNS = {  # the course reports' designs: (cell, hidden_size, num_layers, bidirectional)
    "rnn64": ("rnn", 64, 1, False), "rnn256": ("rnn", 256, 1, False),
    "lstm1": ("lstm", 128, 1, False), "lstm2": ("lstm", 128, 2, False),
    "bilstm1": ("lstm", 128, 1, True),
}


class EmbeddingsNotFound(ValueError):
    pass


def prepare(data: text_data.Texts, config: dict) -> text_data.Encoded:
    max_len = config.get("max_len", "p95")
    return text_data.encode(data, tokenizer_name=config.get("tokenizer", "basic_english"),
                            lowercase=bool(config.get("lowercase", True)),
                            min_freq=int(config.get("min_freq", 2)),
                            max_vocab=int(config.get("max_vocab", 20000)),
                            max_len=max_len if isinstance(max_len, str) else int(max_len))


def _drop_packed(p: PackedSequence, drop: nn.Module) -> PackedSequence:
    return PackedSequence(drop(p.data), p.batch_sizes, p.sorted_indices, p.unsorted_indices)


class SentimentRNN(nn.Module):
    def __init__(self, vocab_size: int, num_classes: int, *, embed_dim: int = 100,
                 hidden_size: int = 128, num_layers: int = 1, cell: str = "lstm",
                 bidirectional: bool = False, dropout: float = 0.3, pooling: str = "last",
                 head_hidden: int = 0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
        if pooling not in ("last", "mean", "max", "attention"):
            raise ValueError(f"pooling must be last, mean, max or attention, got {pooling!r}")
        self.cell, self.hidden_size, self.bidirectional = cell, hidden_size, bidirectional
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        dirs = 2 if bidirectional else 1
        self.rnns = nn.ModuleList(
            CELLS[cell](embed_dim if i == 0 else hidden_size * dirs, hidden_size, batch_first=True,
                        bidirectional=bidirectional) for i in range(num_layers))
        self.drop = nn.Dropout(dropout)
        width = hidden_size * dirs
        if pooling == "attention":
            self.attn = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1, bias=False))
        layers: list[nn.Module] = []
        if head_hidden:
            layers += [nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = head_hidden
        self.head = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def encode(self, x: torch.Tensor):
        """Per-token outputs [B, T, H*dirs] (zeros at padding) and lengths."""
        lengths = (x != 0).sum(1).clamp(min=1)
        steps = int(lengths.max())
        emb = self.drop(self.embedding(x[:, :steps]))
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        for rnn in self.rnns:
            packed, _ = rnn(packed)
            packed = _drop_packed(packed, self.drop)
        out, _ = pad_packed_sequence(packed, batch_first=True, total_length=steps)
        return out, lengths

    def pool(self, out: torch.Tensor, lengths: torch.Tensor):
        """(vector [B, H*dirs], attention weights [B, T] or None)."""
        steps = out.shape[1]
        mask = torch.arange(steps, device=out.device)[None, :] < lengths[:, None]
        if self.pooling == "last":
            h = self.hidden_size
            idx = (lengths - 1).view(-1, 1, 1).expand(-1, 1, h)
            last = out[..., :h].gather(1, idx).squeeze(1)
            if self.bidirectional:
                last = torch.cat([last, out[:, 0, h:]], dim=1)
            return last, None
        if self.pooling == "mean":
            return (out * mask[..., None]).sum(1) / lengths[:, None].to(out.dtype), None
        if self.pooling == "max":
            return out.masked_fill(~mask[..., None], float("-inf")).max(1).values, None
        scores = self.attn(out).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        return (weights[..., None] * out).sum(1), weights

    def attend(self, x: torch.Tensor):
        """(logits, per-token attention weights or None, lengths)."""
        out, lengths = self.encode(x)
        vec, weights = self.pool(out, lengths)
        return self.head(self.drop(vec)), weights, lengths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]

    def portable(self) -> nn.Module:
        return Portable(self)


class Portable(nn.Module):
    """The same network for ``torch.export``: no packing. Each layer runs one
    unidirectional module per direction on the padded batch; the backward one
    reads every sequence reversed *within its length*, so real tokens see only
    real tokens, exactly as with packing. Weights are shared with ``model``."""

    def __init__(self, model: SentimentRNN):
        super().__init__()
        self.model = model.eval()
        cell = CELLS[model.cell]
        self.directions = nn.ModuleList()
        for rnn in model.rnns:
            pair = nn.ModuleList()
            for suffix in ([""] + (["_reverse"] if model.bidirectional else [])):
                one = cell(rnn.input_size, rnn.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    setattr(one, f"{name}_l0", getattr(rnn, f"{name}_l0{suffix}"))
                one.flatten_parameters()
                pair.append(one)
            self.directions.append(pair)

    @staticmethod
    def _reverse(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        t = torch.arange(h.shape[1], device=h.device)[None, :]
        idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
        return h.gather(1, idx[..., None].expand_as(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = (x != 0).sum(1).clamp(min=1)
        h = self.model.embedding(x)
        for pair in self.directions:
            out = pair[0](h)[0]
            if len(pair) == 2:
                back = self._reverse(pair[1](self._reverse(h, lengths))[0], lengths)
                out = torch.cat([out, back], dim=2)
            h = out
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        h = h * mask[..., None]  # zeros at padding, as pad_packed_sequence leaves them
        return self.model.head(self.model.pool(h, lengths)[0])


def embedding_dim(path: str) -> int:
    """The vector size of named vectors or a GloVe / word2vec text file (its first
    vector line)."""
    if path in vectors.NAMED:
        return vectors.NAMED[path]["dim"]
    p = Path(path)
    if not p.is_file():
        raise EmbeddingsNotFound(f"embeddings file {path!r} does not exist; give a GloVe or "
                                 "word2vec text file (word v1 v2 ... per line) or drop `embeddings`")
    with open(p, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().split()
        if len(first) == 2 and all(f.isdigit() for f in first):  # word2vec header "N D"
            return int(first[1])
        return len(first) - 1


def load_vectors(path: str, vocab: list[str], dim: int) -> tuple[torch.Tensor, float]:
    """(matrix [V, dim] with rows for the vocabulary's words found in the file,
    coverage = found / (V - 2 specials)). Other rows: N(0, 0.1); <pad>: zeros."""
    path = vectors.resolve(path)
    stoi = {w: i for i, w in enumerate(vocab)}
    g = torch.Generator().manual_seed(0)
    matrix = torch.randn(len(vocab), dim, generator=g) * 0.1
    found = set()
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip().split(" ")
            if len(parts) != dim + 1:
                continue  # the word2vec header, or a malformed line
            i = stoi.get(parts[0])
            if i is not None and i > 1:
                matrix[i] = torch.tensor([float(v) for v in parts[1:]])
                found.add(i)
    matrix[0] = 0
    return matrix, len(found) / max(1, len(vocab) - 2)


def pretrain(model: SentimentRNN, data, config: dict, device) -> dict:
    """Before epoch 1: load pretrained vectors (when given); log the text facts."""
    info = data.info
    metrics = {"text_vocab_size": info["vocab_size"], "text_max_len": info["max_len"],
               "text_tokenize_seconds": info["tokenize_seconds"],
               "text_train_unk_rate": info["train_unk_rate"]}
    if config.get("embeddings"):
        matrix, coverage = load_vectors(config["embeddings"], info["vocab"],
                                        model.embedding.embedding_dim)
        with torch.no_grad():
            model.embedding.weight.copy_(matrix.to(model.embedding.weight.device))
        model.embedding.weight.requires_grad_(not config.get("freeze_embeddings", False))
        metrics["text_embedding_coverage"] = coverage
    return metrics


def _embed_dim(config: dict) -> int:
    """The size of the pretrained vectors when given (``pretrain`` loads them), else
    embed_dim. An export records the vectors' size as embed_dim beside them (a spec
    cannot set both), so a bundle rebuilds its model without the vectors file."""
    if config.get("embeddings") and not config.get("embed_dim"):
        return embedding_dim(config["embeddings"])
    return int(config.get("embed_dim", 100))


def build(config: dict, data_info: dict) -> SentimentRNN:
    cell, hidden, layers, bi = (config.get("cell", "lstm"), int(config.get("hidden_size", 128)),
                                int(config.get("num_layers", 1)),
                                bool(config.get("bidirectional", False)))
    if config.get("design"):
        if config["design"] not in DESIGNS:
            raise ValueError(f"design must be one of {list(DESIGNS)}, got {config['design']!r}")
        cell, hidden, layers, bi = DESIGNS[config["design"]]
    return SentimentRNN(data_info["vocab_size"], data_info["num_classes"],
                        embed_dim=_embed_dim(config),
                        hidden_size=hidden, num_layers=layers, cell=cell, bidirectional=bi,
                        dropout=float(config.get("dropout", 0.3)),
                        pooling=config.get("pooling", "last"),
                        head_hidden=int(config.get("head_hidden", 0)))


def build_baseline(config: dict, data_info: dict) -> SentimentRNN:
    layers = int(config.get("num_layers", 3))
    if layers < 3:
        raise ValueError(f"the baseline has at least 3 LSTM layers, got num_layers={layers}")
    return SentimentRNN(data_info["vocab_size"], data_info["num_classes"],
                        embed_dim=_embed_dim(config),
                        hidden_size=int(config.get("hidden_size", 128)), num_layers=layers,
                        cell="lstm", dropout=float(config.get("dropout", 0.3)), pooling="last")
