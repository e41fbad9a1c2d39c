"""Search spec: YAML -> frozen, validated :class:`SearchSpec`.

Every problem becomes one :class:`SpecError` line naming the file, the key and
the rule, in Optuna's style: "`low <= high` must hold, but got (low=1, high=0)".
Every key of ``space`` and ``fixed`` must be a parameter the trainable declares
(``trainables/params.py``), and every fixed value, choice option and range
bound must lie in its domain.
CLI flags are applied as overrides *before* validation, so a bad flag is
reported like a bad file entry, with ``(from --flag)`` after the key.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hpsearch import trainables
from hpsearch.errors import SpecError
from hpsearch.trainables import data as data_sources

TOP_KEYS = {"name", "trainable", "data", "objective", "search", "scheduler", "resources", "space",
            "fixed", "failure", "health", "constraints", "export"}
# startup_trials None: TPE's random start-up is min(10, max(2, samples // 3)) trials
# cover: choice parameters whose every option is tried first (see cover_points)
# warm_start: an earlier search (or MLflow experiment) whose finished trials seed the sampler
# warm_start_rerun: how many of its best configurations train again first
# time_budget: wall time of one run (or resume) of the search, e.g. 30m (None: no limit)
SEARCH_KEYS = {"algorithm": "tpe", "samples": 8, "seed": 0, "concurrency": 2, "recheck": None,
               "startup_trials": None, "constant_liar": True, "cover": [], "warm_start": None,
               "warm_start_rerun": 0, "time_budget": None}
CONSTRAINT_KEYS = {"min": None, "max": None}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
RECHECK_KEYS = {"top": 3, "seeds": 3}
SCHEDULER_KEYS = {"name": "asha", "max_epochs": 10, "grace_period": 1, "reduction_factor": 3,
                  "brackets": 1}
RESOURCE_KEYS = {"cpus_per_trial": 1, "gpus_per_trial": 0}
FAILURE_KEYS = {"max_failures": 2}
# the export: refit the chosen configuration on train+val first (for `epochs`, None: the
# epoch at which the chosen trial peaked), as scikit-learn's GridSearchCV(refit=True)
EXPORT_KEYS = {"refit": False, "epochs": None}
ALGORITHMS = ("tpe", "random")
SCHEDULERS = ("asha", "fifo")
KINDS = ("choice", "uniform", "loguniform", "int", "qloguniform")
PARAM_KEYS = set(KINDS) | {"when", "step", "log"}
# config keys that the engine itself sets; a space or fixed block must not shadow them
RESERVED = {"trainable", "data", "max_epochs", "seed", "cpus_per_trial", "health", "refit"}
SMOKE_PER_CLASS = 12




@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of KINDS
    args: tuple  # choice: the options; others: (low, high[, q])
    step: float | int | None = None
    log: bool = False
    when: tuple[tuple[str, tuple], ...] = ()  # (parent, allowed values) pairs, all must hold


@dataclass(frozen=True)
class SearchSpec:
    name: str
    trainable: str
    data: dict
    metric: str
    mode: str
    algorithm: str
    samples: int
    seed: int
    concurrency: int
    recheck: tuple[int, int] | None  # (top configurations, new seeds each), or None: off
    startup_trials: int  # TPE's random start-up trials before it models the results
    constant_liar: bool  # TPE counts running trials as bad ones (concurrency > 1)
    scheduler: str
    max_epochs: int
    grace_period: int
    reduction_factor: int
    brackets: int  # ASHA's brackets (> 1: asynchronous Hyperband)
    cpus_per_trial: float
    gpus_per_trial: float
    max_failures: int
    health: dict | bool  # the training-health checks' settings, or False (off)
    space: tuple[Param, ...]
    fixed: dict
    cover: tuple[str, ...] = ()  # choice parameters whose every option is tried first
    refit: bool = False  # the export refits the chosen configuration on train+val first
    refit_epochs: int | None = None  # the refit's epochs (None: the chosen trial's peak)
    # every objective as (metric, mode), the first being `metric`/`mode`; more than one:
    # a Pareto front (multi-objective TPE, MO-ASHA)
    objectives: tuple[tuple[str, str], ...] = ()
    # (metric, lower, upper) bounds a trial should keep (None: unbounded); one that breaks
    # one is infeasible: ranked after every feasible trial, never an error
    constraints: tuple[tuple[str, float | None, float | None], ...] = ()
    warm_start: str | None = None  # an earlier search whose trials seed the sampler
    warm_start_rerun: int = 0  # its best configurations the search runs again first
    time_budget: float | None = None  # seconds one run (or resume) may take; None: no limit
    source: str = "<spec>"
    raw: dict = field(default_factory=dict, compare=False)  # the validated document, for logging

    @property
    def metrics(self) -> list[str]:
        """The objectives' metrics, the first first."""
        return [m for m, _ in self.objectives] or [self.metric]

    @property
    def modes(self) -> list[str]:
        return [d for _, d in self.objectives] or [self.mode]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def values(self, name: str) -> tuple:
        """The values this search may give parameter ``name``: its fixed value, a choice's
        options, a range's two bounds, or the trainable's declared default when unset."""
        if name in self.fixed:
            return (self.fixed[name],)
        param = next((p for p in self.space if p.name == name), None)
        if param is not None:
            return tuple(param.args)
        return (trainables.get(self.trainable).params[name].default,)

    def cover_points(self) -> list[dict]:
        """The partial configs the search tries first (``search.cover``); see
        :func:`cover_points`."""
        return cover_points(self.space, self.cover)

    def base_config(self) -> dict:
        """Config shared by every trial; the searcher adds the sampled params."""
        return {**copy.deepcopy(self.fixed), "trainable": self.trainable,
                "data": copy.deepcopy(self.data), "max_epochs": self.max_epochs,
                "seed": self.seed, "cpus_per_trial": self.cpus_per_trial,
                "health": copy.deepcopy(self.health)}


# ---------------------------------------------------------------- loading


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with two fixes for spec files.

    Floats as YAML 1.2 reads them: PyYAML follows YAML 1.1, where ``1e-3`` (no dot)
    and ``1.0e3`` (no exponent sign) are strings, so ``lr: {loguniform: [1e-3, 1e-1]}``
    -- how Python, Optuna and Ray write it -- was refused as "must be a number, got
    '1e-3'". A duplicate key is an error, not a silent "the last one wins": two
    ``lr:`` lines under ``space`` would search one and drop the other unseen.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r} (first at line "
                                    f"{seen[key].line + 1}); keep one", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's floats that YAML 1.1 reads as strings: an exponent without a dot in the
# mantissa, or without a sign (PyYAML's own resolver still takes the rest)
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def load_spec(path: str | Path, overrides: dict | None = None, *, smoke: bool = False) -> SearchSpec:
    """Read, override and validate a spec file. Raises SpecError."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: spec file not found; give a path such as spaces/resnet18.yaml "
                        "(`hpsearch trainables` lists the shipped ones)")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise SpecError(f"{path}: is {what}, not a spec file; give a YAML file such as "
                        "spaces/resnet18.yaml")
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=SpecLoader)  # noqa: S506 (safe)
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec file ({e.strerror}); give a readable "
                        "YAML file") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {e.start} is "
                        f"0x{e.object[e.start]:02x}); give a YAML spec") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if problem.startswith("duplicate key"):  # SpecLoader's: the fix is in the message
            raise SpecError(f"{path}:{where}: {problem}") from None
        context, first = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context:  # PyYAML's "found duplicate anchor 'a'; first occurrence", "second ..."
            problem = (f"{context}" + (f" (line {first.line + 1})" if first else "")
                       + f", {problem}")
        raise SpecError(f"{path}:{where}: YAML syntax error: {problem}; fix the YAML") from None
    except RecursionError:
        raise SpecError(f"{path}: nests lists or mappings deeper than the YAML reader can "
                        "follow; a spec is a few levels deep") from None
    except ValueError as e:  # a value the constructor refuses: an integer of 5,000 digits
        raise SpecError(f"{path}: cannot read a value: {str(e).split(';')[0]}; write a "
                        "plain number") from None
    if _expanded_size(doc, MAX_VALUES) > MAX_VALUES:
        raise SpecError(f"{path}: expands to more than {MAX_VALUES:,} values (YAML aliases "
                        "repeating aliases?); a spec is a few dozen lines: write it out")
    return parse_spec(doc, source=str(path), overrides=overrides, smoke=smoke)


MAX_VALUES = 100_000  # values in a spec once its YAML aliases are expanded


def _expanded_size(node: Any, limit: int) -> int:
    """How many values ``node`` holds with every alias expanded, counted up to just past
    ``limit``: a few nested aliases ("billion laughs") name billions of values, which
    the checks and their messages would expand (a 9-level one ran out of 4 GB)."""
    count, stack = 0, [node]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def parse_spec(doc: Any, *, source: str = "<spec>", overrides: dict | None = None,
               smoke: bool = False) -> SearchSpec:
    if not isinstance(doc, dict):
        raise SpecError(f"{source}: the spec must be a YAML mapping with keys {sorted(TOP_KEYS)}")
    doc = copy.deepcopy(doc)
    flags: dict[str, str] = {}  # dotted key -> flag that set it
    for dotted, (value, flag) in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(doc, dotted, value)
        flags[dotted] = flag
    if smoke:
        _apply_smoke(doc)
    return _Validator(source, flags).validate(doc)


def _set_dotted(doc: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = doc
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[leaf] = value


def _apply_smoke(doc: dict) -> None:
    """2 trials, 1 epoch, a tiny data subset: proves a spec runs end to end. Two
    trials cannot try every option of a `search.cover` parameter: the smoke run
    drops `cover` (it proves the spec runs, not what its options do), and re-runs at
    most two of a warm start's best."""
    doc.setdefault("search", {})
    doc.setdefault("scheduler", {})
    doc.setdefault("data", {})
    if isinstance(doc["search"], dict):
        doc["search"]["samples"] = 2
        doc["search"].pop("cover", None)
        rerun = doc["search"].get("warm_start_rerun")
        if isinstance(rerun, int) and not isinstance(rerun, bool) and rerun > 2:
            doc["search"]["warm_start_rerun"] = 2  # two trials hold two re-runs
        if isinstance(doc["search"].get("recheck"), dict):  # the top 2 of 2, twice each
            doc["search"]["recheck"] = {"top": 2, "seeds": 2}
        doc["search"]["concurrency"] = min(2, int(doc["search"].get("concurrency", 2) or 2))
    if isinstance(doc["scheduler"], dict):
        doc["scheduler"].update(max_epochs=1, grace_period=1)
    if isinstance(doc.get("export"), dict) and doc["export"].get("epochs") is not None:
        doc["export"]["epochs"] = 1  # a refit of one epoch, like the trials
    if isinstance(doc["data"], dict) and data_sources.kind(doc["data"]) in ("image", "text"):
        doc["data"]["per_class"] = min(SMOKE_PER_CLASS, doc["data"].get("per_class") or 10**9)
    if isinstance(doc.get("name"), str):
        doc["name"] = doc["name"] + "-smoke"


# ---------------------------------------------------------------- validation


class _Validator:
    def __init__(self, source: str, flags: dict[str, str]):
        self.source, self.flags = source, flags

    def fail(self, key: str, rule: str) -> SpecError:
        flag = f" (from {self.flags[key]})" if key in self.flags else ""
        if len(rule) > 600:  # a long value quoted in the rule: keep its ends, the fix is last
            rule = f"{rule[:400]} ... {rule[-150:]}"
        return SpecError(f"{self.source}: `{key}`{flag}: {rule}")

    def block(self, doc: dict, key: str, defaults: dict) -> dict:
        value = doc.get(key, {})
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a mapping with keys {sorted(defaults)}, got {value!r}")
        unknown = set(value) - set(defaults)
        if unknown:
            raise self.fail(f"{key}.{sorted(unknown)[0]}",
                            f"unknown key; allowed keys under `{key}`: {sorted(defaults)}")
        return {**defaults, **value}

    def number(self, key: str, value, *, integer=False, minimum=None, exclusive=False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if integer:
            ok = ok and float(value).is_integer()
        if not ok:
            raise self.fail(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"must be finite, got {value!r}")
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            rel = ">" if exclusive else ">="
            raise self.fail(key, f"must be {rel} {minimum}, got {value!r}")
        return int(value) if integer else value

    def validate(self, doc: dict) -> SearchSpec:
        unknown = set(doc) - TOP_KEYS
        if unknown:
            raise self.fail(sorted(unknown)[0], f"unknown top-level key; allowed: {sorted(TOP_KEYS)}")
        for key in ("name", "trainable", "data", "objective", "space"):
            if key not in doc:
                raise self.fail(key, "is required")
        name = doc["name"]
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
            raise self.fail("name", f"must be a non-empty string of letters, digits, '-', '_' or "
                                    f"'.', got {name!r}")
        try:
            info = trainables.get(str(doc["trainable"]))
        except KeyError as e:
            raise self.fail("trainable", e.args[0]) from None

        data = doc["data"]
        if not isinstance(data, dict):
            raise self.fail("data", f"must be a mapping with at least `source`, got {data!r}")
        # the kind first: `--data fashion-mnist` on a forecaster's spec is the wrong kind
        # of data, not a data block with keys an image source does not take
        data_kind = data_sources.kind(data) if isinstance(data.get("source"), str) else "unknown"
        if data_kind not in ("unknown", info.data):
            raise self.fail("data.source", f"{data['source']!r} is {data_kind} data but trainable "
                                           f"{info.name!r} takes {info.data} data")
        try:
            data_sources.check(data)
        except ValueError as e:
            raise self.fail("data.source" if data_kind == "unknown" else "data", str(e)) from None

        objectives = self.objectives(doc["objective"], info)
        constraints = self.constraints(doc.get("constraints"), info)

        search = self.block(doc, "search", SEARCH_KEYS)
        if search["algorithm"] not in ALGORITHMS:
            raise self.fail("search.algorithm", f"must be one of {list(ALGORITHMS)}, got "
                                                f"{search['algorithm']!r}")
        samples = self.number("search.samples", search["samples"], integer=True, minimum=1)
        seed = self.number("search.seed", search["seed"], integer=True, minimum=0)
        concurrency = self.number("search.concurrency", search["concurrency"], integer=True,
                                  minimum=1)
        recheck = self.recheck(search)
        startup = search["startup_trials"]
        startup = (min(10, max(2, samples // 3)) if startup is None else
                   self.number("search.startup_trials", startup, integer=True, minimum=1))
        liar = search["constant_liar"]
        if not isinstance(liar, bool):
            raise self.fail("search.constant_liar", f"must be true or false, got {liar!r}")
        search["recheck"] = None if recheck is None else dict(zip(("top", "seeds"), recheck))
        if recheck is not None and len(objectives) > 1:
            raise self.fail("search.recheck", "ranks configurations by the mean of one "
                                              "objective; a search of several objectives has a "
                                              "front instead: drop `recheck` or keep one objective")
        warm = search["warm_start"]
        if warm is not None and (not isinstance(warm, str) or not warm.strip()):
            raise self.fail("search.warm_start", f"must name an earlier search (or MLflow "
                                                 f"experiment), got {warm!r}")
        time_budget = self.duration("search.time_budget", search["time_budget"])

        sched = self.block(doc, "scheduler", SCHEDULER_KEYS)
        if sched["name"] not in SCHEDULERS:
            raise self.fail("scheduler.name", f"must be one of {list(SCHEDULERS)}, got "
                                              f"{sched['name']!r}")
        max_epochs = self.number("scheduler.max_epochs", sched["max_epochs"], integer=True, minimum=1)
        grace = self.number("scheduler.grace_period", sched["grace_period"], integer=True, minimum=1)
        if grace > max_epochs and "scheduler.max_epochs" in self.flags:
            grace = max_epochs  # --max-epochs below the file's grace period: the flag wins
        if grace > max_epochs:
            raise self.fail("scheduler.grace_period", f"`grace_period <= max_epochs` must hold, "
                                                      f"but got ({grace=}, {max_epochs=})")
        rf = self.number("scheduler.reduction_factor", sched["reduction_factor"], integer=True,
                         minimum=2)
        brackets = self.number("scheduler.brackets", sched["brackets"], integer=True, minimum=1)

        res = self.block(doc, "resources", RESOURCE_KEYS)
        cpus = self.number("resources.cpus_per_trial", res["cpus_per_trial"], minimum=0,
                           exclusive=True)
        gpus = self.number("resources.gpus_per_trial", res["gpus_per_trial"], minimum=0)
        failure = self.block(doc, "failure", FAILURE_KEYS)
        max_failures = self.number("failure.max_failures", failure["max_failures"], integer=True,
                                   minimum=0)

        health = self.health(doc.get("health", True))
        export = self.export(doc)
        fixed = doc.get("fixed") or {}
        if not isinstance(fixed, dict):
            raise self.fail("fixed", f"must be a mapping of parameter: value, got {fixed!r}")
        for k, value in fixed.items():
            if k in RESERVED:
                raise self.fail(f"fixed.{k}", f"is set by the engine; use the spec's own "
                                              f"`{_owner(k)}` instead")
            problem = self.declared(info, f"fixed.{k}", k).problem(value)
            if problem:
                raise self.fail(f"fixed.{k}", problem)
        space = self.space(doc["space"], fixed, info)
        cover = self.cover(search["cover"], space, fixed, samples)
        search["cover"] = list(cover)
        rerun = self.rerun(search, warm, samples, space)

        sched["grace_period"] = grace
        raw = {**doc, "search": search, "scheduler": sched, "resources": res, "failure": failure,
               "health": health, "export": export}
        return SearchSpec(
            name=name, trainable=info.name, data=dict(data), metric=objectives[0][0],
            mode=objectives[0][1], algorithm=search["algorithm"], samples=samples, seed=seed,
            recheck=recheck, startup_trials=startup, constant_liar=liar,
            concurrency=concurrency, scheduler=sched["name"], max_epochs=max_epochs,
            grace_period=grace, reduction_factor=rf, brackets=brackets, cpus_per_trial=cpus, gpus_per_trial=gpus,
            max_failures=max_failures, health=health, space=space, fixed=dict(fixed),
            cover=cover, objectives=objectives, constraints=constraints, warm_start=warm,
            warm_start_rerun=rerun, time_budget=time_budget, refit=export["refit"], refit_epochs=export["epochs"],
            source=self.source, raw=raw,
        )

    def rerun(self, search: dict, warm: str | None, samples: int, space) -> int:
        """`search.warm_start_rerun`: how many of the warm start's best configurations the
        search trains again first (default 0: benchmarks/RESULTS.md measured no gain on
        its task). They share the trials with `cover`'s points: both fit in `samples`."""
        free = samples - len(cover_points(space, tuple(search["cover"])))
        rerun = search["warm_start_rerun"]
        rerun = 0 if rerun is None else self.number("search.warm_start_rerun", rerun,
                                                    integer=True, minimum=0)
        if rerun and not warm:
            raise self.fail("search.warm_start_rerun", "re-runs the best configurations of "
                            "a warm start; set `search.warm_start` too (or drop it)")
        if rerun > free:
            raise self.fail("search.warm_start_rerun", f"{rerun} re-runs do not fit in "
                            f"{samples} trials" + (f" beside `cover`'s {samples - free} "
                                                   "points" if free < samples else "")
                            + f"; lower it to {free} or raise `search.samples`")
        search["warm_start_rerun"] = rerun
        return rerun

    def export(self, doc: dict) -> dict:
        """`export`: {refit: true|false, epochs: N (a refit's; absent: the chosen trial's
        peak epoch)}."""
        block = self.block(doc, "export", EXPORT_KEYS)
        if not isinstance(block["refit"], bool):
            raise self.fail("export.refit", f"must be true or false, got {block['refit']!r}")
        if block["epochs"] is not None:
            block["epochs"] = self.number("export.epochs", block["epochs"], integer=True,
                                          minimum=1)
            if not block["refit"]:
                raise self.fail("export.epochs", "sets the refit's epochs, but `export.refit` "
                                                 "is false; set `refit: true` or drop `epochs`")
        return block

    def duration(self, key: str, value) -> float | None:
        """A duration: 30m, 2h, 90s or 1.5h (units s, m, h), or a number of seconds."""
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise self.fail(key, f"must be a duration such as 30m, 2h or 90s (units s, m, h; "
                                 f"a plain number is seconds), got {value!r}") from None
        if not seconds > 0:
            raise self.fail(key, f"must be more than 0 seconds, got {value!r}")
        return seconds

    def objectives(self, value, info) -> tuple[tuple[str, str], ...]:
        """`objective`: {metric, mode}, or a list of them (a Pareto front)."""
        many = isinstance(value, list)
        items = value if many else [value]
        if many and not items:
            raise self.fail("objective", "is an empty list; give {metric: <name>, mode: max|min} "
                                         "or a list of them")
        reported = info.reported
        out: list[tuple[str, str]] = []
        for i, objective in enumerate(items):
            key = f"objective[{i}]" if many else "objective"
            if not isinstance(objective, dict) or set(objective) != {"metric", "mode"}:
                raise self.fail(key, f"must be {{metric: <name>, mode: max|min}}, got {objective!r}")
            metric, mode = objective["metric"], objective["mode"]
            if metric not in reported:
                raise self.fail(f"{key}.metric",
                                f"{metric!r} is never reported by trainable {info.name!r}; it "
                                f"reports {list(reported)}")
            if mode not in ("max", "min"):
                raise self.fail(f"{key}.mode", f"must be max or min, got {mode!r}")
            better = trainables.BETTER.get(metric)
            if better is not None and mode != better:
                raise self.fail(f"{key}.mode",
                                f"{metric} is better when "
                                f"{'higher' if better == 'max' else 'lower'}, so mode "
                                f"{mode} would search for the worst trials; use mode: {better}")
            if any(m == metric for m, _ in out):
                raise self.fail(f"{key}.metric", f"{metric!r} is already an objective; each "
                                                 "metric is one objective")
            out.append((metric, mode))
        return tuple(out)

    def constraints(self, value, info) -> tuple[tuple[str, float | None, float | None], ...]:
        """`constraints`: {metric: {min: x, max: y}} bounds a trial should keep."""
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail("constraints", f"must be a mapping like {{num_params: {{max: 2.0e6}}}}, "
                                           f"got {value!r}")
        out = []
        for metric, bounds in value.items():
            key = f"constraints.{metric}"
            if metric not in info.reported:
                raise self.fail(key, f"{metric!r} is never reported by trainable {info.name!r}, "
                                     f"so no trial could be checked against it; it reports "
                                     f"{list(info.reported)}")
            block = self.block({key: bounds}, key, CONSTRAINT_KEYS)
            low, high = block["min"], block["max"]
            if low is None and high is None:
                raise self.fail(key, "needs `min`, `max` or both")
            low = None if low is None else self.number(f"{key}.min", low)
            high = None if high is None else self.number(f"{key}.max", high)
            if low is not None and high is not None and low > high:
                raise self.fail(key, f"`min <= max` must hold, but got (min={low}, max={high})")
            out.append((str(metric), low, high))
        return tuple(out)

    def recheck(self, search: dict) -> tuple[int, int] | None:
        """`search.recheck`: {top: K, seeds: N} (or false/absent: off)."""
        value = search.get("recheck")
        if value in (None, False):
            return None
        block = self.block({"search.recheck": value}, "search.recheck", RECHECK_KEYS)
        top = self.number("search.recheck.top", block["top"], integer=True, minimum=1)
        seeds = self.number("search.recheck.seeds", block["seeds"], integer=True, minimum=2)
        if top > search["samples"]:
            raise self.fail("search.recheck.top", f"`top <= samples` must hold, but got "
                                                  f"(top={top}, samples={search['samples']})")
        return top, seeds

    def cover(self, value, space: tuple[Param, ...], fixed: dict, samples: int) -> tuple[str, ...]:
        """`search.cover`: a list of the space's choice parameters (empty: off), whose
        cover points (:func:`cover_points`) fit in `samples` trials."""
        key = "search.cover"
        if value is None or value is False:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"must be a list of choice parameters of `space`, like "
                                 f"[kernel_size], got {value!r}")
        by_name = {p.name: p for p in space}
        choices = [p.name for p in space if p.kind == "choice"]
        for name in value:
            if value.count(name) > 1:
                raise self.fail(key, f"names {name!r} twice")
            param = by_name.get(name)
            if param is None:
                where = "is in `fixed`, not searched" if name in fixed else "is not in `space`"
                raise self.fail(key, f"{name!r} {where}; only a choice parameter of `space` "
                                     f"can be covered: {choices}")
            if param.kind != "choice":
                raise self.fail(key, f"{name!r} is a {param.kind} range, not a choice; only a "
                                     f"choice parameter's options can be covered: {choices}")
        try:
            points = cover_points(space, tuple(value))
        except ValueError as e:
            raise self.fail(key, str(e)) from None
        if len(points) > samples:
            flag = (f", from {self.flags['search.samples']}" if "search.samples" in self.flags
                    else "")
            raise self.fail(key, f"trying every option of {value} takes {len(points)} trials, "
                                 f"more than `samples` ({samples}{flag}); raise `samples` or "
                                 "cover fewer parameters")
        return tuple(value)

    def health(self, value) -> dict | bool:
        """`health: false`, or a mapping over the checks' defaults (trainables/health.py)."""
        from hpsearch.trainables.health import DEFAULTS

        if value is False:
            return False
        if value is True or value is None:
            return dict(DEFAULTS)
        doc = {"health": value}
        block = self.block(doc, "health", DEFAULTS)
        for key in ("divergence", "grad_ratio"):
            v = self.number(f"health.{key}", block[key], minimum=0)
            if 0 < v <= 1:
                raise self.fail(f"health.{key}", f"must be 0 (off) or > 1, got {v!r}")
        v = self.number("health.chance_after", block["chance_after"], minimum=0)
        if v > 1:
            raise self.fail("health.chance_after", f"is a fraction of the first epoch: must be in "
                                                   f"[0, 1] (0 = off), got {v!r}")
        self.number("health.check_every", block["check_every"], integer=True, minimum=1)
        return block

    def declared(self, info: trainables.TrainableInfo, key: str, name: str):
        """The trainable's declaration of parameter ``name``; unknown: one line with the fix."""
        param = info.params.get(name)
        if param is None:
            raise self.fail(key, info.unknown(name))
        return param

    def in_domain(self, declared, p: Param) -> None:
        """Every option of a choice, and both bounds of a range, lie in the declared domain."""
        key = f"space.{p.name}.{p.kind}"
        if p.kind != "choice":
            samples = int if p.kind == "int" or (
                p.kind == "qloguniform" and all(isinstance(v, int) for v in (*p.args, p.step))
            ) else float
            if not declared.accepts_kind(samples):
                use = ("{int: [low, high]} (with log: true for a log scale) or {choice: [...]}"
                       if declared.accepts_kind(int) else "{choice: [...]}")
                article = "an" if p.kind == "int" else "a"
                raise self.fail(key, f"`{p.name}` takes {declared.type_name} values "
                                     f"({declared.domain_text}), not {article} {p.kind} range; "
                                     f"use {use}")
        for value in p.args:
            problem = declared.problem(value)
            if problem:
                raise self.fail(key, problem)

    def space(self, space: Any, fixed: dict, info: trainables.TrainableInfo) -> tuple[Param, ...]:
        if not isinstance(space, dict) or not space:
            raise self.fail("space", "must be a non-empty mapping of parameter: {kind: args}")
        params = []
        for name, body in space.items():
            key = f"space.{name}"
            if name in RESERVED:
                raise self.fail(key, f"is set by the engine; use the spec's own `{_owner(name)}`")
            declared = self.declared(info, key, name)
            if name in fixed:
                raise self.fail(key, "is also in `fixed`; a parameter is either searched or fixed")
            if not isinstance(body, dict):
                raise self.fail(key, f"must be a mapping like {{uniform: [0.0, 1.0]}}, got {body!r}")
            unknown = set(body) - PARAM_KEYS
            if unknown:
                raise self.fail(key, f"unknown space kind {sorted(unknown)[0]!r}; use one of "
                                     f"{list(KINDS)} (with optional when/step/log)")
            kinds = [k for k in KINDS if k in body]
            if len(kinds) != 1:
                raise self.fail(key, f"needs exactly one kind of {list(KINDS)}, got {kinds}")
            params.append(self.param(name, kinds[0], body))
            self.in_domain(declared, params[-1])
        names = {p.name for p in params}
        for p in params:
            for parent, _ in p.when:
                if parent not in names:
                    raise self.fail(f"space.{p.name}.when",
                                    f"names unknown parameter {parent!r}; known: {sorted(names)}")
        return tuple(_toposort(params, self))

    def param(self, name: str, kind: str, body: dict) -> Param:
        key = f"space.{name}.{kind}"
        args = body[kind]
        when = self.when(name, body.get("when"))
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise self.fail(key, f"must be a non-empty list of options, got {args!r}")
            if len({repr(a) for a in args}) != len(args):
                raise self.fail(key, f"options must be distinct, got {args!r}")
            return Param(name, kind, tuple(args), when=when)
        size = 3 if kind == "qloguniform" else 2
        if not isinstance(args, list) or len(args) != size:
            shape = "[low, high, q]" if size == 3 else "[low, high]"
            raise self.fail(key, f"must be a list {shape}, got {args!r}")
        low = self.number(key, args[0], integer=kind == "int")
        high = self.number(key, args[1], integer=kind == "int")
        if low > high:
            raise self.fail(key, f"`low <= high` must hold, but got ({low=}, {high=})")
        log = bool(body.get("log", False)) or kind in ("loguniform", "qloguniform")
        if log and low <= 0:
            raise self.fail(key, f"a log scale needs `low > 0`, but got ({low=})")
        step = body.get("step")
        if kind == "qloguniform":
            step = self.number(key, args[2], minimum=0, exclusive=True)
        elif step is not None:
            step = self.number(f"space.{name}.step", step, integer=kind == "int", minimum=0,
                               exclusive=True)
            if log:
                raise self.fail(f"space.{name}.step", "cannot be combined with a log scale; "
                                                      "use qloguniform: [low, high, q]")
        if kind == "int" and step is None:
            step = 1
        return Param(name, kind, (low, high), step=step, log=log, when=when)

    def when(self, name: str, when: Any) -> tuple:
        if when is None:
            return ()
        if not isinstance(when, dict) or not when:
            raise self.fail(f"space.{name}.when", f"must be a mapping like {{optimizer: sgd}}, "
                                                  f"got {when!r}")
        return tuple((parent, tuple(v) if isinstance(v, list) else (v,))
                     for parent, v in when.items())


def parse_duration(value) -> float:
    """Seconds in ``30m``, ``2h``, ``90s``, ``1.5h`` or a plain number of seconds; raises
    ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(value))
        if not match:
            raise ValueError(value)
        seconds = float(match[1]) * DURATION_UNITS[match[2] or "s"]
    if not math.isfinite(seconds):
        raise ValueError(value)
    return seconds


def cover_points(space: tuple[Param, ...], cover: tuple[str, ...]) -> list[dict]:
    """The partial configs `search.cover` makes the search try first, in order: every
    option of each covered choice parameter once. Several covered parameters share
    these trials (trial i takes option i of each, while it has one), so they cost as
    many trials as the longest list of options, not every combination. A covered
    parameter under `when:` applies only where its conditions hold, so its points
    also fix its parents (the first allowed value, where no covered parent set one).
    The parameters a point does not name are sampled as usual. Raises ValueError if
    a parameter's conditions cannot hold at once."""
    by_name = {p.name: p for p in space}
    points: list[dict] = []
    for p in space:  # parents before children (the parser sorted them)
        if p.name not in cover:
            continue
        for option in p.args:
            for point in [*points, {}]:
                needs = None if p.name in point else _conditions(point, p, by_name)
                if needs is not None:
                    break
            else:
                raise ValueError(f"cannot cover {p.name!r}: its `when` conditions cannot all "
                                 "hold at once")
            if not point:
                points.append(point)
            point.update(needs)
            point[p.name] = option
    return points


def _conditions(point: dict, p: Param, by_name: dict) -> dict | None:
    """What ``point`` must also fix for ``p`` to be sampled: {} if its `when` holds
    already, None if it cannot hold there."""
    needs: dict = {}
    for parent, allowed in p.when:
        have = {**point, **needs}
        if parent in have:
            if have[parent] not in allowed:
                return None
            continue
        more = _conditions(have, by_name[parent], by_name)
        if more is None:
            return None
        needs.update(more)
        needs[parent] = allowed[0]
    return needs


def _owner(key: str) -> str:
    return {"max_epochs": "scheduler.max_epochs", "seed": "search.seed",
            "cpus_per_trial": "resources.cpus_per_trial"}.get(key, key)


def _toposort(params: list[Param], v: _Validator) -> list[Param]:
    """Order parameters so that every `when` parent is sampled before its child."""
    by_name = {p.name: p for p in params}
    done: list[Param] = []
    state: dict[str, str] = {}

    def visit(p: Param, chain: tuple[str, ...]) -> None:
        if state.get(p.name) == "done":
            return
        if state.get(p.name) == "active":
            raise v.fail(f"space.{p.name}.when", f"conditions form a cycle: {' -> '.join(chain)}")
        state[p.name] = "active"
        for parent, allowed in p.when:
            visit(by_name[parent], (*chain, parent))
            if by_name[parent].kind == "choice":
                bad = [a for a in allowed if a not in by_name[parent].args]
                if bad:
                    raise v.fail(f"space.{p.name}.when", f"{bad[0]!r} is not an option of "
                                                         f"{parent!r} {list(by_name[parent].args)}")
        state[p.name] = "done"
        done.append(p)

    for p in params:
        visit(p, (p.name,))
    return done
