"""Jobs for tests/test_long_runs.py's ``population.run_all`` checks (importable by spawned workers)."""

import os
import signal
import time


def square(value: int) -> int:
    return value * value


def killed(delay: float = 1.0) -> None:
    """Die as the OOM killer would have it: SIGKILL, no exception, no cleanup."""
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGKILL)


def fails() -> None:
    raise ValueError("this job fails")
