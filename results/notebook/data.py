"""The data section of a hand-in notebook: what the data is, its size and split, the
statistics the assignment asks for, and at least three figures per kind of data.

Every function takes a :class:`~hpsearch.Search` and reads the data source its spec
names, loaded as its trials loaded it (the same split, subset and seed), so what the
notebook shows is what the search trained on. Figures come back detached from
pyplot: a notebook shows each exactly once, where the cell returns it.
"""

from __future__ import annotations

from hpsearch.results.report._common import plt

# What each built-in source is, in a sentence (a user's own source says where it is).
SOURCES = {
    "fashion-mnist": "Fashion-MNIST (Xiao et al., 2017): 28×28 grayscale photos of Zalando "
                     "articles in 10 classes, 70,000 images",
    "digits": "scikit-learn's handwritten digits: 1,797 8×8 grayscale scans in 10 classes "
              "(UCI optical recognition of handwritten digits)",
    "seattle-weather": "daily Seattle weather 2012-2015 (vega_datasets): precipitation, "
                       "maximum and minimum temperature, wind and the day's weather",
    "chicago-ridership": "daily Chicago 'L' ridership 2001-2016 at Clark/Lake with weather "
                         "and game days (R modeldata's Chicago, Kuhn & Johnson)",
    "fine-foods": "Amazon Fine Foods reviews (McAuley & Leskovec, 2013; R modeldata's "
                  "small_fine_foods), 'great' (5 stars) against 'other'",
}
FIGURES = {
    "image": ("class_grid", "class_counts", "pixel_histogram", "mean_images"),
    "series": ("target_over_time", "feature_histograms", "correlations", "autocorrelation"),
    "text": ("text_lengths", "class_balance", "frequent_tokens"),
}
SPLITS = ("train", "val", "test")


def data_kind(search) -> str:
    """image, series or text: the kind of the search's data source."""
    from hpsearch.trainables.data import kind

    return kind(search.spec.data)


def source_data(search):
    """The search's data source as its trials loaded it (cached per process)."""
    from hpsearch.trainables.data import load

    return load(search.spec.data)


def describe_data(search):
    """What the data is, where it comes from and how it is split (Markdown)."""
    from IPython.display import Markdown

    cfg, data = search.spec.data, source_data(search)
    source = cfg["source"]
    what = SOURCES.get(source) or f"the user's own data, `{source}`"
    sizes = _sizes(data)
    split = ("split sequentially (never shuffled)" if data_kind(search) == "series"
             else f"split seeded (seed {data.info.get('split_seed', 0)}) and stratified")
    subset = f"; {cfg['per_class']} examples per class kept" if cfg.get("per_class") else ""
    unit = "rows" if data_kind(search) == "series" else "examples"
    return Markdown(f"**Data**: {what}{subset}. Used here: {sizes['train']:,} training, "
                    f"{sizes['val']:,} validation and {sizes['test']:,} test {unit}, {split}. "
                    "Statistics (normalization, scaler, vocabulary) come from the training "
                    "split only; the test split is evaluated once, at export.")


def _sizes(data) -> dict:
    info = data.info
    return info.get("sizes") or info.get("rows")


def data_summary(search):
    """The statistics the assignment asks for, one row each (a DataFrame)."""
    import pandas as pd

    kind, data = data_kind(search), source_data(search)
    rows = [(f"{split} examples", n) for split, n in _sizes(data).items()]
    if kind == "image":
        x = _pixels(data, "train")
        rows += [("image shape (C×H×W)", "×".join(map(str, x.shape[1:]))),
                 ("classes", ", ".join(data.info["classes"])),
                 *[(f"pixel mean / std, channel {c} (train)", f"{x[:, c].mean():.4f} / "
                    f"{x[:, c].std():.4f}") for c in range(x.shape[1])]]
    elif kind == "series":
        info, frame = data.info, series_frame(data)
        rows += [(f"{split} period", " to ".join(info["periods"][split])) for split in SPLITS]
        rows += [("target", info["target"]), ("missing values (filled: " + info["fill"] + ")",
                                              str(info["missing_values"] or "none")),
                 ("one-hot columns", ", ".join(info["one_hot"]) or "none"),
                 ("scaler (train only)", info["scaler"])]
        train = frame.iloc[:data.bounds[0]]
        rows += [(f"{c}: mean / std / min / max (train)", f"{train[c].mean():.4g} / "
                  f"{train[c].std():.4g} / {train[c].min():.4g} / {train[c].max():.4g}")
                 for c in measured_columns(data)]
    else:
        lengths = _token_counts(data.train[0])
        rows += [("classes", ", ".join(data.info["classes"])),
                 ("tokens per text (train): mean / median / 95th percentile",
                  f"{lengths.mean():.1f} / {_pct(lengths, 50)} / {_pct(lengths, 95)}"),
                 ("distinct tokens (train)", len({t for text in data.train[0]
                                                  for t in _tokens(text)}))]
    if kind != "series":
        counts = _label_counts(data, "train")
        rows.append(("training examples per class (min / max)",
                     f"{min(counts)} / {max(counts)}"))
    return pd.DataFrame(rows, columns=["statistic", "value"]).set_index("statistic")


def data_figures(search) -> dict:
    """Every data figure of the search's kind of data, by name (see :data:`FIGURES`)."""
    return {name: data_figure(search, name) for name in FIGURES[data_kind(search)]}


def data_figure(search, name: str):
    """One data figure: images ``class_grid``, ``class_counts``, ``pixel_histogram``,
    ``mean_images``; series ``target_over_time``, ``feature_histograms``,
    ``correlations``, ``autocorrelation``; texts ``text_lengths``, ``class_balance``,
    ``frequent_tokens``."""
    kind = data_kind(search)
    if name not in FIGURES[kind]:
        raise ValueError(f"no data figure {name!r} for {kind} data; choose one of "
                         f"{list(FIGURES[kind])}")
    fig = globals()[f"_{name}"](source_data(search))
    fig.tight_layout()
    plt.close(fig)  # shown once, where the cell returns it
    return fig


# ---------------------------------------------------------------- images


def _pixels(data, split: str):
    """A split's images in [0, 1], the normalization undone (numpy [N, C, H, W])."""
    import numpy as np

    x = getattr(data, split)[0].numpy()
    mean = np.asarray(data.info["mean"])[:, None, None]
    std = np.asarray(data.info["std"])[:, None, None]
    return (x * std + mean).clip(0, 1)


def _image(ax, chw) -> None:
    from hpsearch.results.report.images import _show

    _show(ax, chw)
    ax.axis("off")


def _class_grid(data, per_class: int = 8):
    import numpy as np

    x, y = _pixels(data, "train"), data.train[1].numpy()
    classes = data.info["classes"]
    fig, axes = plt.subplots(len(classes), per_class,
                             figsize=(per_class * 1.1, len(classes) * 1.15), squeeze=False)
    for c, row in enumerate(axes):
        picks = np.flatnonzero(y == c)[:per_class]
        for ax in row:
            ax.axis("off")
        for ax, i in zip(row, picks):
            _image(ax, x[i])
        row[0].set_title(classes[c], fontsize=8, loc="left")
    fig.suptitle(f"{per_class} training images per class")
    return fig


def _label_counts(data, split: str) -> list[int]:
    import numpy as np

    labels = np.asarray(getattr(data, split)[1])
    return [int((labels == c).sum()) for c in range(len(data.info["classes"]))]


def _class_counts(data):
    import numpy as np

    classes = data.info["classes"]
    fig, ax = plt.subplots(figsize=(max(6, len(classes) * 0.8), 4))
    at = np.arange(len(classes))
    for i, split in enumerate(SPLITS):
        ax.bar(at + (i - 1) * 0.27, _label_counts(data, split), 0.27, label=split)
    ax.set_xticks(at, classes, rotation=45 if len(classes) > 4 else 0, ha="right", fontsize=8)
    ax.set_ylabel("examples")
    ax.set_title("examples per class and split")
    ax.legend()
    return fig


def _pixel_histogram(data):
    x = _pixels(data, "train")
    fig, ax = plt.subplots(figsize=(7, 4))
    names = ["red", "green", "blue"] if x.shape[1] == 3 else ["gray"]
    for c, name in enumerate(names):
        values = x[:, c].ravel()[:2_000_000]
        ax.hist(values, bins=50, alpha=0.6, color=name if name != "gray" else "tab:gray",
                label=name, log=True)
    ax.set_xlabel("pixel intensity (0 black, 1 white)")
    ax.set_ylabel("pixels (log scale)")
    ax.set_title("pixel intensities of the training images")
    ax.legend()
    return fig


def _mean_images(data):
    x, y = _pixels(data, "train"), data.train[1].numpy()
    classes = data.info["classes"]
    fig, axes = plt.subplots(1, len(classes), figsize=(len(classes) * 1.3, 1.7), squeeze=False)
    for c, ax in enumerate(axes[0]):
        _image(ax, x[y == c].mean(0))
        ax.set_title(classes[c][:12], fontsize=7)
    fig.suptitle("mean training image per class")
    return fig


# ---------------------------------------------------------------- series

CALENDAR = ("dow_", "next_dow_", "holiday", "next_holiday", "season_")


def series_frame(data):
    """The whole table in its own units (the scaler undone), indexed by time."""
    import pandas as pd

    info = data.info
    values = data.values * info["scale"] + info["offset"]
    return pd.DataFrame(values, columns=info["columns"], index=pd.Index(data.times, name="time"))


def measured_columns(data) -> list[str]:
    """The table's measured columns: not one-hot, not calendar columns."""
    one_hot = tuple(f"{c}_" for c in data.info["one_hot"])
    return [c for c in data.info["columns"]
            if not c.startswith(CALENDAR) and not (one_hot and c.startswith(one_hot))]


def _target_over_time(data):
    frame, info = series_frame(data), data.info
    a, b = data.bounds
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot(range(len(frame)), frame[info["target"]], lw=0.7, color="black")
    for (lo, hi), split, color in (((0, a), "train", "tab:blue"), ((a, b), "val", "tab:orange"),
                                   ((b, len(frame)), "test", "tab:green")):
        ax.axvspan(lo, hi, color=color, alpha=0.12, label=f"{split} ({hi - lo} rows)")
    step = max(1, len(frame) // 10)
    ax.set_xticks(range(0, len(frame), step), frame.index[::step], rotation=30, ha="right",
                  fontsize=8)
    ax.set_ylabel(info["target"])
    ax.set_title(f"{info['target']} over time, split sequentially")
    ax.legend(fontsize=8)
    return fig


def _feature_histograms(data):
    import math

    frame = series_frame(data).iloc[:data.bounds[0]]
    columns = measured_columns(data)
    cols = min(4, len(columns))
    fig, axes = plt.subplots(math.ceil(len(columns) / cols), cols,
                             figsize=(3.2 * cols, 2.6 * math.ceil(len(columns) / cols)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, c in zip(axes.ravel(), columns):
        ax.axis("on")
        ax.hist(frame[c], bins=40, color="tab:blue", alpha=0.8)
        ax.set_title(c, fontsize=9)
    fig.suptitle("distribution of each measured column (training period)")
    return fig


def _correlations(data):
    columns = measured_columns(data)
    corr = series_frame(data).iloc[:data.bounds[0]][columns].corr()
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(columns), 0.6 + 0.6 * len(columns)))
    im = ax.imshow(corr, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(columns)), columns, fontsize=8)
    for i in range(len(columns)):
        for j in range(len(columns)):
            ax.text(j, i, f"{corr.iloc[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("correlation of the measured columns (training period)")
    return fig


def _autocorrelation(data):
    import numpy as np

    target = series_frame(data)[data.info["target"]].iloc[:data.bounds[0]].to_numpy()
    lags = np.arange(1, max(2, min(60, len(target) // 4)))
    centred = target - target.mean()
    acf = [float(np.dot(centred[:-k], centred[k:]) / np.dot(centred, centred)) for k in lags]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(lags, acf, color="tab:blue")
    bound = 2 / np.sqrt(len(target))  # white noise stays inside ±2/sqrt(n)
    ax.axhline(bound, color="gray", ls=":")
    ax.axhline(-bound, color="gray", ls=":")
    ax.set_xlabel("lag (steps)")
    ax.set_ylabel("autocorrelation")
    ax.set_title(f"autocorrelation of {data.info['target']} (training period)")
    return fig


# ---------------------------------------------------------------- texts


def _tokens(text: str) -> list[str]:
    from hpsearch.trainables.data.text import basic_english

    return basic_english(text)


def _token_counts(texts):
    import numpy as np

    return np.asarray([len(_tokens(t)) for t in texts])


def _pct(values, q: float) -> int:
    import numpy as np

    return int(np.percentile(values, q))


def _text_lengths(data):
    texts, labels = data.train
    lengths = _token_counts(texts)
    fig, ax = plt.subplots(figsize=(8, 4))
    top = _pct(lengths, 99)
    for c, name in enumerate(data.info["classes"]):
        ax.hist(lengths[labels == c].clip(max=top), bins=40, alpha=0.6, label=name)
    ax.axvline(_pct(lengths, 95), color="black", ls=":", label="95th percentile")
    ax.set_xlabel("tokens per text (basic_english; clipped at the 99th percentile)")
    ax.set_ylabel("training texts")
    ax.set_title("text lengths per class")
    ax.legend()
    return fig


def _class_balance(data):
    return _class_counts(data)


def _frequent_tokens(data, top: int = 15):
    from collections import Counter

    import numpy as np
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    texts, labels = data.train
    classes = data.info["classes"]
    fig, axes = plt.subplots(1, len(classes), figsize=(4.5 * len(classes), 5), squeeze=False)
    for c, ax in enumerate(axes[0]):
        counts = Counter(t for i in np.flatnonzero(labels == c) for t in _tokens(texts[i])
                         if t.isalpha() and t not in ENGLISH_STOP_WORDS)
        words, n = zip(*counts.most_common(top)) if counts else ((), ())
        ax.barh(list(words)[::-1], list(n)[::-1], color="tab:blue")
        ax.set_title(f"{classes[c]!r}: most frequent tokens", fontsize=9)
        ax.set_xlabel("occurrences (stop words left out)")
    return fig
