"""The one way to wait for something: poll a predicate until it gives a truthy value."""

import time


def wait_until(predicate, timeout=10, interval=0.05, message=None):
    """Calls `predicate()` until it returns something truthy, and returns that; raises
    TimeoutError with `message` (or the predicate's name) when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message if message is not None else getattr(predicate, "__name__", "a condition")
            if callable(what):
                what = what()
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(interval)
