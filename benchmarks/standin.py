"""The trainable the orchestration benchmarks name in their specs.

They hand the engine their own trial function (a no-op, a sleep), so nothing
here trains; the module declares the parameters their specs set, as any
trainable named by module path must, so the specs validate like a user's.
"""

from hpsearch.trainables.constraints import Param, floats

TASK = "classification"
PARAMS = (
    Param("x", floats(0, 1), 0.5, "input of the synthetic objective the trial reports"),
    Param("sleep_seconds", floats(0), 2.0, "seconds each trial sleeps before its one report"),
)


def build(config: dict, data_info: dict):
    raise RuntimeError("benchmarks.standin trains nothing: the benchmark passes its own trial")
