"""The live progress line (search/progress.py), driven through its Tune callback
hooks the way Tune's loop calls them; a whole search through the CLI is in
tests/test_batch.py (plain lines when the output is not a terminal)."""

from __future__ import annotations

import io
import pickle
from types import SimpleNamespace

import pytest

from hpsearch.search.progress import CLEAR, SearchProgress, duration


def _view(tty: bool, **kw) -> tuple[SearchProgress, io.StringIO]:
    out = io.StringIO()
    view = SearchProgress(name="demo", samples=4, expected_epochs=2.5, metric="val_accuracy",
                          mode="max", stream=out, tty=tty, gpu=False, **kw)
    return view, out


def _trial(n: int):
    return SimpleNamespace(trial_id=f"t{n}")


def test_on_a_terminal_the_line_is_redrawn_in_place_and_logs_scroll_above_it():
    view, out = _view(tty=True)
    log = view.above(lambda text: out.write(text + "\n"))
    view.on_trial_start(0, [], _trial(1))
    view._last = float("-inf")  # (redraws are throttled to two a second)
    view.on_trial_result(0, [], _trial(1), {"val_accuracy": 0.5, "training_iteration": 1})
    drawn = out.getvalue()
    assert drawn.count(CLEAR) == 2 and "\n" not in drawn  # redrawn, never a new line
    assert drawn.rsplit(CLEAR, 1)[1].startswith(
        "search 'demo': 0/4 trials done, 1 running | 1/10 epochs (10%) | "
        "best val_accuracy 0.5 | ~")  # then the time left
    log("  trial  1/4 [t1] completed after 1 epoch(s)")
    view.on_trial_complete(0, [], _trial(1))
    text = out.getvalue()[len(drawn):]
    # the progress line is erased, the log line printed on its own line, the line redrawn
    assert text.startswith(CLEAR + "  trial  1/4 [t1] completed after 1 epoch(s)\n" + CLEAR)
    view.finish()
    final = out.getvalue().rsplit(CLEAR, 1)[1]
    # the budget is live: trial 1 ended after 1 of its 2.5 expected epochs -> 1 + 3 x 2.5
    assert final.startswith("search 'demo': 1/4 trials done | 1/8 epochs (12%) | "
                            "best val_accuracy 0.5 | ") and final.endswith(" so far\n"), final
    assert "left" not in final  # a finished search has no estimate
    view.finish()
    assert out.getvalue().rsplit(CLEAR, 1)[1] == final  # once


def test_without_a_terminal_it_prints_plain_lines_at_most_every_period():
    view, out = _view(tty=False, every=3600)
    for i in range(1, 4):
        view.on_trial_start(0, [], _trial(i))
        view.on_trial_result(0, [], _trial(i), {"val_accuracy": 0.1 * i})
        view.on_trial_complete(0, [], _trial(i))
    view.on_trial_result(0, [], _trial(4), {"error": "OutOfMemory: ..."})  # not an epoch
    view.on_experiment_end([])
    lines = out.getvalue().splitlines()
    assert CLEAR not in out.getvalue()
    assert len(lines) == 2, lines  # the first event, then the final line
    assert lines[1].startswith("search 'demo': 3/4 trials done | 3/6 epochs (50%) | "
                               "best val_accuracy 0.3 |"), lines


def test_time_left_comes_from_plan_then_from_the_search_so_far(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("hpsearch.search.progress.time.monotonic", lambda: clock[0])
    view, _ = _view(tty=False, epoch_seconds_hint=6.0, concurrency=2)
    # before any epoch: 10 expected epochs x 6 s / 2 at once
    assert view.seconds_left() == pytest.approx(30.0)
    clock[0] += 20
    for i in range(4):
        view.on_trial_result(0, [], _trial(i), {"val_accuracy": 0.2})
    assert view.seconds_left() == pytest.approx(6 * 20 / 4)  # 6 epochs left at 4 per 20 s
    assert "~30s left" in view.line()
    view.mode, view.best = "min", None
    view.on_trial_result(0, [], _trial(9), {"val_accuracy": 0.9})
    view.on_trial_result(0, [], _trial(9), {"val_accuracy": 0.4})
    assert view.best == 0.4


def test_a_time_budget_is_counted_down_and_caps_the_estimate(monkeypatch):
    from hpsearch.search.stopping import TimeBudget

    clock = [1000.0]
    monkeypatch.setattr("hpsearch.search.progress.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("hpsearch.search.stopping.time.monotonic", lambda: clock[0])
    budget = TimeBudget(600)
    view, out = _view(tty=False, time_budget=budget)
    assert "budget 10m00s left" in view.line()  # before Tune's loop starts: all of it
    budget.setup()
    clock[0] += 60
    view.on_trial_result(0, [], _trial(1), {"val_accuracy": 0.5})  # 1 epoch a minute
    line = view.line()
    assert "budget 9m00s left" in line and "~" not in line, "the estimate ends after it"
    clock[0] += 600
    view.on_experiment_end([])
    assert out.getvalue().splitlines()[-1].endswith("| time budget spent | 11m00s so far")


def test_it_survives_tunes_pickling_without_its_stream():
    view, _ = _view(tty=True)
    view.on_trial_result(0, [], _trial(1), {"val_accuracy": 0.7})
    restored = pickle.loads(pickle.dumps(view))  # Tune keeps callbacks in its experiment state
    assert (restored.epochs, restored.best, restored.tty) == (1, 0.7, False)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"),
                                           (3600 * 2 + 65, "2h01m")])
def test_durations_read_as_people_write_them(seconds, text):
    assert duration(seconds) == text


def test_a_resumed_search_takes_its_counts_from_the_restored_trials():
    """Tune restores the callback from an older save of the experiment: the first hook
    after the resume recounts from the trials it is given (done, running, epochs, best)."""
    view, _ = _view(tty=False, every=3600)
    view.on_trial_start(0, [], _trial(1))  # what the older save holds: nothing done
    restored = pickle.loads(pickle.dumps(view))

    def trial(n, status, epochs, best):
        return SimpleNamespace(trial_id=f"t{n}", status=status,
                               last_result={"training_iteration": epochs},
                               metric_analysis={"val_accuracy": {"max": best, "min": 0.1}})

    trials = [trial(1, "TERMINATED", 3, 0.7), trial(2, "TERMINATED", 1, 0.9),
              trial(3, "RUNNING", 2, 0.8), trial(4, "PENDING", 0, float("nan"))]
    restored.on_step_end(0, trials)
    assert (restored.done, restored.running, restored.epochs, restored.best) == \
        (2, {"t3", "t4"}, 6, 0.9)
    # 6 trained + t3 past 2 of its 2.5 expected + t4's 2.5
    assert restored.line().startswith("search 'demo': 2/4 trials done, 2 running | 6/9 epochs")
    restored.on_trial_result(0, trials, _trial(3), {"val_accuracy": 0.95})  # events count again
    restored.on_trial_complete(0, trials, _trial(3))
    assert (restored.done, restored.epochs, restored.best) == (3, 7, 0.95)
    done = pickle.loads(pickle.dumps(view))  # resumed after every trial had ended
    done.on_experiment_end([trial(n, "TERMINATED", 3, 0.5 + n / 10) for n in range(1, 5)])
    assert (done.done, done.epochs, done.best) == (4, 12, 0.9)



def test_the_epoch_budget_follows_asha_when_early_trials_train_past_its_average():
    """ASHA promotes the first trials of a search freely (a rung with few results), so
    they train past the average of ASHA's odds. The budget then grows with them instead
    of reading "46/40 epochs (100%)" with no time left, as a fixed budget did."""
    from hpsearch.search.plan import EpochsLeft

    asha = EpochsLeft(max_epochs=8, reduction_factor=2, brackets=((2, 4),))
    assert [asha(t) for t in (0, 1, 2, 4, 7, 8)] == [4.0, 3.0, 4.0, 4.0, 1.0, 0.0]
    out = io.StringIO()
    view = SearchProgress(name="s", samples=10, expected_epochs=asha, metric="val_accuracy",
                          mode="max", stream=out, tty=False, gpu=False)
    assert view.budget == 40  # 10 trials x 4 expected epochs
    seen = []
    for t in (_trial(1), _trial(2)):  # both promoted at every rung: 8 epochs each
        view.on_trial_start(0, [], t)
    for epoch in range(1, 9):
        for t in (_trial(1), _trial(2)):
            view.on_trial_result(0, [], t, {"val_accuracy": 0.5, "training_iteration": epoch})
            seen.append((view.epochs, view.budget))
    assert all(epochs < budget for epochs, budget in seen[:-1]), seen
    assert seen[-1] == (16, 16 + 8 * 4)  # 16 trained, 8 trials still to come
    assert view.seconds_left() is not None and "(33%)" in view.line()
    view.on_trial_complete(0, [], _trial(1))
    view.on_trial_complete(0, [], _trial(2))
    assert view.budget == 48 and view.done == 2
