"""Labelled texts: read, split (seeded, stratified), tokenize, build a vocabulary.

``load(cfg)`` returns raw texts per split (:class:`Texts`). The token ids are
made per trial by :func:`encode`, because the tokenizer, vocabulary size and
truncation length are hyperparameters; the vocabulary comes from the training
split only. Sources: ``fine-foods`` (R modeldata's small_fine_foods: its own
4,000 training / 1,000 test reviews, validation carved from training),
``aclimdb:<dir>`` (Stanford's train|test/pos|neg/*.txt layout) and
``csv:<file>`` with ``text`` and ``label`` columns.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAD, UNK = "<pad>", "<unk>"
TOKENIZERS = ("basic_english", "treebank", "tweet", "word_tokenize")


@dataclass(eq=False)  # hashed by identity: encode() caches per loaded source
class Texts:
    train: tuple[list[str], np.ndarray]
    val: tuple[list[str], np.ndarray]
    test: tuple[list[str], np.ndarray]
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- sources


def _fine_foods():
    from hpsearch.trainables.data import modeldata

    classes = ["other", "great"]  # index 1 is the positive class of binary metrics
    out = []
    for name in ("training_data", "testing_data"):
        df = modeldata.read(name)
        texts = [str(t) for t in df["review"].tolist()]
        labels = np.asarray([classes.index(str(s)) for s in df["score"]], dtype=np.int64)
        out.append((texts, labels))
    return out[0], out[1], classes


def _aclimdb(root: Path):
    classes = ["neg", "pos"]
    out = []
    for part in ("train", "test"):
        texts, labels = [], []
        for k, c in enumerate(classes):
            folder = root / part / c
            if not folder.is_dir():
                raise ValueError(f"aclimdb folder {str(root)!r} lacks {part}/{c}/; expected the "
                                 "Stanford layout <dir>/{train,test}/{pos,neg}/*.txt")
            for f in sorted(folder.glob("*.txt")):
                texts.append(f.read_text(encoding="utf-8", errors="replace").replace("<br />", " "))
                labels.append(k)
        out.append((texts, np.asarray(labels, dtype=np.int64)))
    return out[0], out[1], classes


def _csv(path: Path, text_col: str, label_col: str):
    import pandas as pd

    df = pd.read_csv(path)
    for col in (text_col, label_col):
        if col not in df.columns:
            raise ValueError(f"column {col!r} is not in {path}; columns: {list(df.columns)} "
                             "(set data.text and data.label)")
    df = df.dropna(subset=[text_col, label_col])
    classes = sorted(str(c) for c in df[label_col].unique())
    if len(classes) < 2:
        raise ValueError(f"column {label_col!r} of {path} holds {len(classes)} label(s) "
                         f"{classes}; a classifier needs at least two")
    counts = df[label_col].astype(str).value_counts()
    if counts.min() < 3:  # one example each in train, validation and test
        raise ValueError(f"label {counts.idxmin()!r} of {path} has {counts.min()} row(s); the "
                         "train/validation/test split needs at least 3 of every label")
    labels = np.asarray([classes.index(str(c)) for c in df[label_col]], dtype=np.int64)
    return [str(t) for t in df[text_col]], labels, classes


def _split(labels: np.ndarray, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    return train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)


def _cap(texts, labels, per_class, rng):
    if not per_class:
        return texts, labels
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in np.unique(labels)]))
    return [texts[i] for i in keep], labels[keep]


def load(cfg: dict) -> Texts:
    return _load_cached(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_cached(key: str) -> Texts:
    cfg = json.loads(key)
    source, seed = cfg["source"], int(cfg.get("seed", 0))
    vf = cfg.get("val_fraction", 0.15)
    if source == "fine-foods" or source.startswith("aclimdb:"):
        (tr_t, tr_y), test, classes = (_fine_foods() if source == "fine-foods"
                                       else _aclimdb(Path(source.split(":", 1)[1])))
        tr, va = _split(tr_y, vf, seed)
        train, val = ([tr_t[i] for i in tr], tr_y[tr]), ([tr_t[i] for i in va], tr_y[va])
    else:
        texts, labels, classes = _csv(Path(source.split(":", 1)[1]), cfg.get("text", "text"),
                                      cfg.get("label", "label"))
        rest, te = _split(labels, cfg.get("test_fraction", 0.15), seed)
        sub = labels[rest]
        tr_i, va_i = _split(sub, vf / (1 - cfg.get("test_fraction", 0.15)), seed)
        tr, va = rest[tr_i], rest[va_i]
        pick = lambda ix: ([texts[i] for i in ix], labels[ix])  # noqa: E731
        train, val, test = pick(tr), pick(va), pick(te)
    rng = np.random.default_rng(seed)
    per_class = cfg.get("per_class")
    train, val, test = (_cap(*s, per_class, rng) for s in (train, val, test))
    info = {"source": source, "task": "classification", "kind": "text", "classes": classes,
            "num_classes": len(classes), "split_seed": seed,
            "sizes": {"train": len(train[1]), "val": len(val[1]), "test": len(test[1])}}
    return Texts(train=train, val=val, test=test, info=info)


# ---------------------------------------------------------------- tokenizers

_BASIC = [(re.compile(p), r) for p, r in (
    (r"\'", " '  "), (r"\"", ""), (r"\.", " . "), (r"<br \/>", " "), (r",", " , "),
    (r"\(", " ( "), (r"\)", " ) "), (r"\!", " ! "), (r"\?", " ? "), (r"\;", " "),
    (r"\:", " "), (r"\s+", " "))]


def basic_english(text: str) -> list[str]:
    """torchtext's ``basic_english``: lower-case, split punctuation off, split on spaces."""
    text = text.lower()
    for pattern, repl in _BASIC:
        text = pattern.sub(repl, text)
    return text.split()


class PunktMissing(ValueError):
    pass


def tokenizer(name: str, lowercase: bool = True):
    """A callable str -> list[str]. NLTK's treebank and tweet tokenizers need no
    downloaded data; ``word_tokenize`` needs ``punkt_tab`` and says so when absent."""
    if name == "basic_english":
        return basic_english
    if name == "treebank":
        from nltk.tokenize import TreebankWordTokenizer

        tok = TreebankWordTokenizer().tokenize
    elif name == "tweet":
        from nltk.tokenize import TweetTokenizer

        tok = TweetTokenizer(preserve_case=not lowercase, reduce_len=True).tokenize
    elif name == "word_tokenize":
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab")
        except LookupError:
            raise PunktMissing("tokenizer word_tokenize needs NLTK's punkt_tab data, which is not "
                               "installed (python -m nltk.downloader punkt_tab); or use "
                               "treebank or tweet, which need no download") from None
        tok = nltk.word_tokenize
    else:
        raise ValueError(f"tokenizer must be one of {list(TOKENIZERS)}, got {name!r}")
    if lowercase:
        return lambda s: tok(s.lower())
    return tok


# ---------------------------------------------------------------- encoding


@dataclass
class Encoded:
    train: tuple
    val: tuple
    test: tuple
    info: dict
    texts: dict  # split -> raw texts, for the misclassified-examples report


def build_vocab(token_lists, min_freq: int, max_size: int) -> list[str]:
    counts = Counter(t for toks in token_lists for t in toks)
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq]
    return [PAD, UNK] + words[: max(0, max_size - 2)]


def ids(tokens: list[str], stoi: dict, max_len: int) -> list[int]:
    unk = stoi[UNK]
    return [stoi.get(t, unk) for t in tokens[:max_len]] or [unk]


def pad(id_lists: list[list[int]], max_len: int):
    """pad_sequence to the longest, then to exactly ``max_len`` columns (pad id 0)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    x = pad_sequence([torch.tensor(s, dtype=torch.long) for s in id_lists], batch_first=True)
    if x.shape[1] < max_len:
        x = torch.nn.functional.pad(x, (0, max_len - x.shape[1]))
    return x[:, :max_len].contiguous()


def encode(texts: Texts, *, tokenizer_name: str = "basic_english", lowercase: bool = True,
           min_freq: int = 2, max_vocab: int = 20000, max_len: int | str = "p95") -> Encoded:
    key = json.dumps([tokenizer_name, lowercase, min_freq, max_vocab, max_len])
    return _encode_cached(key, texts)


@functools.lru_cache(maxsize=4)
def _encode_cached(key: str, texts: Texts) -> Encoded:
    import torch

    tokenizer_name, lowercase, min_freq, max_vocab, max_len = json.loads(key)
    tok = tokenizer(tokenizer_name, lowercase)
    t0 = time.perf_counter()
    tokens = {s: [tok(t) for t in getattr(texts, s)[0]] for s in ("train", "val", "test")}
    seconds = time.perf_counter() - t0
    vocab = build_vocab(tokens["train"], int(min_freq), int(max_vocab))
    stoi = {w: i for i, w in enumerate(vocab)}
    lengths = np.asarray([len(t) for t in tokens["train"]])
    if isinstance(max_len, str):  # "p95": a percentile of the training lengths
        length = int(np.ceil(np.percentile(lengths, float(max_len.lstrip("p")))))
    else:
        length = int(max_len)
    length = max(1, length)
    out = {}
    for s in ("train", "val", "test"):
        x = pad([ids(t, stoi, length) for t in tokens[s]], length)
        out[s] = (x, torch.from_numpy(getattr(texts, s)[1]))
    train_tokens = sum(len(t) for t in tokens["train"])
    unk_rate = float((out["train"][0] == stoi[UNK]).sum()) / max(1, train_tokens)
    info = {**texts.info, "tokenizer": tokenizer_name, "lowercase": bool(lowercase),
            "vocab": vocab, "vocab_size": len(vocab), "max_len": length,
            "max_len_rule": str(max_len), "tokenize_seconds": seconds,
            "truncated_fraction": float((lengths > length).mean()),
            "train_unk_rate": unk_rate, "median_length": float(np.median(lengths))}
    return Encoded(train=out["train"], val=out["val"], test=out["test"], info=info,
                   texts={s: getattr(texts, s)[0] for s in ("train", "val", "test")})
