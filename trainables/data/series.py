"""Time series: read, report and fill missing values, one-hot categoricals,
split sequentially (never shuffled), scale with training-part statistics.

``load(cfg)`` returns a :class:`Series` of the whole scaled table; the windows
of ``seq_length`` past steps -> the next ``horizon`` values are cut per trial by
:func:`windows` (``seq_length`` is a hyperparameter, the table is not).
The target is always column 0 of the table, so the last input step's column 0
is the naive last-value forecast.

Calendar columns (``calendar: true``, the default, with a time column): each
row's day of week; for a daily series also whether the row's day is a US
federal holiday, the *next* day's weekday and holiday flag, and the season (the
day of the year as sine and cosine). The next day's
calendar is known in advance, and in a window's last row it is the calendar
of the day being predicted: without it a model must guess a Monday holiday
from the lags (on Chicago ridership the holidays and the days after them were
the largest test errors).
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpsearch.trainables.data import check_columns

DEFAULTS = {
    "seattle-weather": {"target": "temp_max", "time_column": "date"},
    "chicago-ridership": {"target": "ridership", "time_column": "date"},
}


@dataclass
class Series:
    values: np.ndarray            # [T, F] float32, scaled; column 0 is the target
    times: list[str]              # one label per row (dates), for plots
    bounds: tuple[int, int]       # rows [0, a) train, [a, b) val, [b, T) test
    info: dict = field(default_factory=dict)


def _read(source: str, cfg: dict):
    import pandas as pd

    if source == "seattle-weather":
        from vega_datasets import local_data

        return local_data.seattle_weather()  # shipped inside the package: offline
    if source == "chicago-ridership":
        from hpsearch.trainables.data import modeldata

        df = modeldata.read("Chicago").reset_index(drop=True)
        df["date"] = pd.to_datetime(df["date"], unit="D")  # R Date: days since 1970-01-01
        return df
    path = Path(source.split(":", 1)[1])
    return pd.read_csv(path)


def load(cfg: dict) -> Series:
    return _load_cached(json.dumps(cfg, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_cached(key: str) -> Series:
    import pandas as pd

    cfg = json.loads(key)
    source = cfg["source"]
    cfg = {**DEFAULTS.get(source, {}), **cfg}
    df = _read(source, cfg)
    check_columns({**cfg, "source": source}, list(df.columns))
    target, time_col = cfg["target"], cfg.get("time_column")
    if time_col:
        try:
            with warnings.catch_warnings():  # "could not infer format": dates of mixed forms
                warnings.simplefilter("ignore", UserWarning)
                df[time_col] = pd.to_datetime(df[time_col])
        except (ValueError, TypeError) as e:
            raise ValueError(f"`time_column` {time_col!r} of {source} does not hold dates: "
                             f"{str(e).splitlines()[0]}") from None
        df = df.sort_values(time_col).reset_index(drop=True)
    target_values = pd.to_numeric(df[target], errors="coerce")
    text = df[target][target_values.isna() & df[target].notna()]
    if len(text) or pd.api.types.is_bool_dtype(df[target]):
        raise ValueError(f"`target` {target!r} of {source} must hold numbers, but holds "
                         f"{text.iloc[0] if len(text) else df[target].iloc[0]!r}")
    features = cfg.get("features") or [c for c in df.columns if c not in (target, time_col)]
    frame = df[[target] + [c for c in features if c != target]].copy()

    missing = {c: int(n) for c, n in frame.isna().sum().items() if n}
    fill = cfg.get("fill", "interpolate")
    if fill == "interpolate":
        numeric = frame.select_dtypes("number").columns
        frame[numeric] = frame[numeric].interpolate(limit_direction="both")
        frame = frame.ffill().bfill()
    elif fill == "ffill":
        frame = frame.ffill().bfill()
    else:  # drop
        keep = frame.notna().all(axis=1)
        frame, df = frame[keep].reset_index(drop=True), df[keep].reset_index(drop=True)

    categorical = [c for c in frame.columns[1:] if not pd.api.types.is_numeric_dtype(frame[c])
                   or pd.api.types.is_bool_dtype(frame[c])]
    frame = pd.get_dummies(frame, columns=categorical, dtype=np.float32)
    if time_col and cfg.get("calendar", True):
        daily = df[time_col].diff().median() == pd.Timedelta(days=1)
        for name, column in calendar_columns(df[time_col], daily=daily).items():
            frame[name] = column
    values = frame.to_numpy(dtype=np.float64)

    n = len(values)
    vf, tf = cfg.get("val_fraction", 0.15), cfg.get("test_fraction", 0.15)
    a, b = int(round(n * (1 - vf - tf))), int(round(n * (1 - tf)))
    h = int(cfg.get("horizon", 1))
    if a < 9 or b - a < h or n - b < h:  # 8 training windows at seq_length 1; a window each
        raise ValueError(f"{source} has {n} rows ({a} train, {b - a} validation, {n - b} test "
                         f"after `fill: {fill}`); a series needs at least 9 training rows and "
                         f"{h} (the horizon) in each of validation and test")
    train = values[:a]
    if cfg.get("scaler", "standard") == "minmax":
        offset, scale = train.min(0), train.max(0) - train.min(0)
    else:
        offset, scale = train.mean(0), train.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    scaled = ((values - offset) / scale).astype(np.float32)
    times = (df[time_col].dt.strftime("%Y-%m-%d").tolist() if time_col
             else [str(i) for i in range(n)])
    info = {
        "source": source, "task": "regression", "kind": "series",
        "target": target, "columns": list(frame.columns), "time_column": time_col,
        "horizon": int(cfg.get("horizon", 1)), "fill": fill, "missing_values": missing,
        "one_hot": categorical, "scaler": cfg.get("scaler", "standard"),
        "offset": offset.tolist(), "scale": scale.tolist(),
        "target_offset": float(offset[0]), "target_scale": float(scale[0]),
        "rows": {"train": a, "val": b - a, "test": n - b},
        "periods": {"train": [times[0], times[a - 1]], "val": [times[a], times[b - 1]],
                    "test": [times[b], times[-1]]},
    }
    return Series(values=scaled, times=times, bounds=(a, b), info=info)


def calendar_columns(dates, *, daily: bool) -> dict[str, np.ndarray]:
    """Day-of-week one-hot (weekly seasonality) of each date; for daily data also the
    US federal holiday flag of the date, the weekday and holiday flag of the day after
    it (known in advance: in a window's last row, the predicted day's), and the season:
    the day of the year as a point on a circle (sine and cosine), so that 31 December
    and 1 January are neighbours."""
    import pandas as pd
    from pandas.tseries.holiday import USFederalHolidayCalendar

    dates = pd.to_datetime(pd.Series(dates)).reset_index(drop=True)
    out = {f"dow_{d}": (dates.dt.day_of_week == d).to_numpy(np.float32) for d in range(7)}
    if not daily:
        return out
    following = dates + pd.Timedelta(days=1)
    holidays = USFederalHolidayCalendar().holidays(dates.min(), following.max())
    out["holiday"] = dates.isin(holidays).to_numpy(np.float32)
    out["next_holiday"] = following.isin(holidays).to_numpy(np.float32)
    out.update({f"next_dow_{d}": (following.dt.day_of_week == d).to_numpy(np.float32)
                for d in range(7)})
    angle = 2 * np.pi * (dates.dt.day_of_year.to_numpy() - 1) / 365.25
    out["season_sin"], out["season_cos"] = np.sin(angle).astype(np.float32), \
        np.cos(angle).astype(np.float32)
    return out


@dataclass
class Windows:
    train: tuple
    val: tuple
    test: tuple
    info: dict
    times: dict  # split -> labels of each window's first target step


def windows(series: Series, seq_length: int) -> Windows:
    """[N, seq_length, F] inputs -> [N, horizon] targets for each split; a split's
    windows may look back into the previous split for inputs, never for targets."""
    import torch

    h = series.info["horizon"]
    v = series.values
    t_all = len(v)
    a, b = series.bounds
    if a - seq_length < 8:
        raise ValueError(f"seq_length {seq_length} leaves fewer than 8 training windows "
                         f"({a} training rows); use a shorter seq_length")

    def cut(start: int, end: int):
        starts = np.arange(max(start, seq_length), end - h + 1)
        idx = starts[:, None] + np.arange(-seq_length, 0)[None, :]
        x = torch.from_numpy(v[idx])
        y = torch.from_numpy(v[starts[:, None] + np.arange(h)[None, :], 0])
        return (x, y), [series.times[s] for s in starts]

    (tr, ttr), (va, tva), (te, tte) = cut(0, a), cut(a, b), cut(b, t_all)
    info = {**series.info, "seq_length": seq_length, "input_size": int(v.shape[1]),
            "sizes": {"train": len(tr[1]), "val": len(va[1]), "test": len(te[1])}}
    return Windows(train=tr, val=va, test=te, info=info,
                   times={"train": ttr, "val": tva, "test": tte})
