"""Discussion written from the numbers, never from a fixed text: what each search
found, which option of an investigated parameter won and by how much, which search
won a comparison, whether a difference exceeds twice the split's standard error,
and where a reference score was met or missed.

Accuracies are proportions of n independent examples, so their standard error is
the binomial sqrt(p (1 - p) / n); a difference smaller than twice it is not
separated by this split. R² has no such closed form here, so series are judged
against the naive last-value forecast instead.
"""

from __future__ import annotations

import math

from hpsearch.results.notebook.search import (
    _markdown,
    bundle_metrics,
    bundle_path,
    choice_rows,
    investigated,
)

# Published scores a shipped spec is judged against (benchmarks/MODELS.md lists them
# with the course's targets): (trainable, data source) -> (what, test accuracy)
REFERENCE_SCORES = {
    ("resnet18", "fashion-mnist"): ("the Fashion-MNIST benchmark's ResNet18", 0.949),
    ("vgg16", "fashion-mnist"): ("the Fashion-MNIST benchmark's VGG16", 0.935),
}


def standard_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` examples."""
    return math.sqrt(max(p * (1 - p), 1e-9) / max(n, 1))


def _points(x: float) -> str:
    return f"{x * 100:.1f} points"


def _and(items: list[str]) -> str:
    items = [str(i) for i in items]
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


def discussion(*searches):
    """The discussion of one search or of several answering one part (Markdown)."""
    parts = [search_paragraph(s) for s in searches]
    for s in searches:
        parts += [choice_paragraph(s, p) for p in investigated(s)]
    if len(searches) > 1:
        parts.append(comparison_paragraph(searches))
    gradients = gradient_sentence(searches)
    if gradients:
        parts.append(gradients)
    return _markdown("\n\n".join(p for p in parts if p))


def _counts(search) -> str:
    frame = search.trials
    reasons = frame["stop_reason"].astype(str) if not frame.empty else []
    n = {k: sum(r == k for r in reasons) for k in ("completed", "asha_stopped", "interrupted")}
    failed = sum(r.startswith(("error", "unhealthy")) for r in reasons)
    return (f"{len(frame)} trial(s) of `{search.meta['spec']['trainable']}`: {n['completed']} "
            f"completed, {n['asha_stopped']} stopped early by ASHA, {failed} failed or stopped "
            f"as unhealthy" + (f", {n['interrupted']} interrupted" if n["interrupted"] else ""))


def search_paragraph(search) -> str:
    """What one search found, and what its exported model scores on the test split."""
    best = search.best
    if best is None or best.best is None or not math.isfinite(best.best):
        reasons = sorted(set(search.trials["stop_reason"].astype(str))) if len(
            search.trials) else []
        return (f"**`{search.name}`: every trial failed**, so there is no model to evaluate: "
                f"{_counts(search)} (stop reasons: {_and(reasons) or 'none recorded'}). "
                f"`hpsearch status {search.name}` and the trials table above say why.")
    text = (f"**`{search.name}`** ran {_counts(search)}. The best, trial `{best.trial_id}`, "
            f"reached {search.metric} {best.best:.4f} after {best.epochs} epoch(s).")
    if bundle_path(search) is None:
        return text + " It is not exported, so it has no test score yet."
    m = bundle_metrics(search)
    return text + " " + (_regression_test(m) if m.get("task") == "regression"
                         else _classification_test(search, m))


def _classification_test(search, m: dict) -> str:
    import pandas as pd

    from hpsearch.results.notebook.search import _report_file

    test, val, n = m["test"]["accuracy"], m["val"].get("accuracy"), m["test"]["n"]
    se = standard_error(test, n)
    text = (f"Evaluated once on the test split (n = {n}), the exported trial scores **test "
            f"accuracy {test:.4f}** (±{_points(se)} standard error)")
    if val is not None:
        gap = val - test
        text += (f", {_points(abs(gap))} {'below' if gap > 0 else 'above'} its validation "
                 f"accuracy {val:.4f}, " + ("more than twice the standard error: the search's "
                                           "choice was partly fitted to the validation split"
                                           if abs(gap) > 2 * se else
                                           "within twice the standard error"))
    support = pd.read_csv(_report_file(search, "per_class.csv"))["support"]
    majority = support.max() / max(1, support.sum())
    text += (f". Guessing scores {1 / len(support):.1%} and always answering the most "
             f"frequent class {majority:.1%}; the model is {_points(abs(test - majority))} "
             f"{'above' if test > majority else 'below'} that.")
    ref = REFERENCE_SCORES.get((search.meta["spec"]["trainable"],
                                search.meta["spec"]["data"]["source"]))
    if ref:
        what, score = ref
        text += (f" Against {what} ({score:.1%}) it is {_points(abs(test - score))} "
                 f"{'above: met' if test >= score else 'below: missed'}.")
    return text


def _regression_test(m: dict) -> str:
    t = m["test"]
    beats = t["rmse"] < t["naive_rmse"]
    return (f"Evaluated once on the test split (n = {t['n']} windows), the exported trial "
            f"scores **test R² {t['r2']:.4f}** (RMSE {t['rmse']:.4g}, MAE {t['mae']:.4g}), "
            f"against the naive last-value forecast's R² {t['naive_r2']:.4f} (RMSE "
            f"{t['naive_rmse']:.4g}): skill {t['skill']:+.3f}, so the model "
            + ("beats copying the last value: met." if beats else
               "does not beat copying the last value: missed."))


def choice_paragraph(search, parameter: str) -> str:
    """Which option of an investigated parameter won on the validation split, by how
    much against twice the split's standard error, and what it costs."""
    rows = choice_rows(search, parameter)
    key = f"best {search.metric}"
    done = [r for r in rows if r[key] is not None]
    untried = [str(r[parameter]) for r in rows if r[key] is None]
    tail = (f" No trial of {_and(untried)} reported {search.metric}." if untried else "")
    if len(done) < 2:
        only = f"only {parameter} = {done[0][parameter]} finished a trial" if done else \
            "no option finished a trial"
        return f"**{parameter}** in `{search.name}`: {only}, so nothing is compared.{tail}"
    win, second = done[0], done[1]
    gap = abs(win[key] - second[key])
    text = (f"**{parameter}** in `{search.name}`: {parameter} = {win[parameter]} is best "
            f"({search.metric} {win[key]:.4f}, trial `{win['best trial']}`), ahead of "
            f"{second[parameter]} ({second[key]:.4f}) by {gap:.4f}")
    n = _val_size(search)
    if search.metric.endswith("accuracy") and n:
        se = standard_error(win[key], n)
        text += (f": {'more than' if gap > 2 * se else 'within'} twice the validation split's "
                 f"standard error (±{_points(se)}, n = {n})"
                 + ("" if gap > 2 * se else ", so this search does not separate them"))
    cheapest = min((r for r in done if r["parameters"]), key=lambda r: r["parameters"],
                   default=None)
    if cheapest and win["parameters"] and win["parameters"] > 1.05 * cheapest["parameters"]:
        text += (f"; it has {win['parameters'] / cheapest['parameters']:.1f}x the parameters "
                 f"of {cheapest[parameter]}")
    shorter = [r for r in done[1:] if (r["its epochs"] or 0) < (win["its epochs"] or 0)]
    if shorter:
        text += (f". Unequal training: ASHA stopped the best trial of {_and([r[parameter] for r in shorter])} "
                 f"earlier than the winner's {win['its epochs']} epochs, so the gap also "
                 "counts that training")
    return text + "." + tail


def _val_size(search) -> int | None:
    path = bundle_path(search)
    return bundle_metrics(search)["val"].get("n") if path else None


def comparison_paragraph(searches) -> str:
    """Which search's exported model won on the test split, and by how much."""
    scored = []
    for s in searches:
        if bundle_path(s) is None:
            continue
        m = bundle_metrics(s)
        key = "r2" if m.get("task") == "regression" else "accuracy"
        scored.append((s, key, m["test"][key], m["test"]["n"]))
    if len(scored) < 2:
        return "Fewer than two of these searches have an exported model, so none is compared."
    if len({key for _, key, _, _ in scored}) > 1:
        return "These searches measure different things (accuracy, R²); none is compared."
    scored.sort(key=lambda t: -t[2])
    (win, key, top, n), (second, _, runner, _) = scored[0], scored[1]
    gap = top - runner
    text = f"**Comparison**{_differences([s for s, *_ in scored])}: "
    if gap == 0:
        text += f"`{win.name}` and `{second.name}` tie on test {key} at {top:.4f}"
    else:
        text += (f"`{win.name}` ({win.meta['spec']['trainable']}) has the best test {key}, "
                 f"{top:.4f}, {gap:.4f} above `{second.name}` "
                 f"({second.meta['spec']['trainable']}, {runner:.4f})")
    if key == "accuracy":
        se = standard_error(top, n)
        text += (f": {'more than' if gap > 2 * se else 'within'} twice the test split's "
                 f"standard error (±{_points(se)}, n = {n})"
                 + ("" if gap > 2 * se else ", so the test split does not separate them"))
    same = len({str(sorted(s.meta["spec"]["data"].items())) for s, *_ in scored}) == 1
    if not same:
        text += ". Their data settings differ, so they were not tested on the same examples"
    order = ", ".join(f"`{s.name}` {v:.4f}" for s, _, v, _ in scored)
    return text + f". All, best first: {order}."


def _differences(searches) -> str:
    """What sets the searches apart: their trainables, or the fixed values they differ in."""
    specs = [s.meta["spec"] for s in searches]
    if len({sp["trainable"] for sp in specs}) > 1:
        return ""  # the trainables are named with each search below
    keys = sorted({k for sp in specs for k in (sp.get("fixed") or {})})
    differ = [k for k in keys if len({repr((sp.get("fixed") or {}).get(k)) for sp in specs}) > 1]
    if not differ:
        return ""
    shown = "; ".join(f"`{k}`: " + " vs ".join(
        str((sp.get("fixed") or {}).get(k, "default")).lower() for sp in specs) for k in differ)
    return f" (the searches differ in {shown})"


def gradient_sentence(searches) -> str | None:
    """Each batch-norm kind's first/deepest gradient-norm ratio, when the trials logged
    gradient norms and both kinds finished (None otherwise)."""
    from hpsearch.results.report._common import plt
    from hpsearch.results.report.search import batch_norm_kinds, twins_figure
    from hpsearch.results.status import trial_rows

    twins, _ = batch_norm_kinds([trial_rows(s.name, s.storage) for s in searches])
    if len(twins) < 2:
        return None
    fig, sentence = twins_figure(twins)
    plt.close(fig)
    return sentence
