"""Run an experiment and kill -9 this very process at a chosen instant (for tests/test_kills.py).

    python tests/kill_run.py INSTANT RUN_DIR OVERRIDE...

The kill is SIGKILL sent by the process to itself when the run reaches INSTANT: no exception handler, `finally`
block or atexit hook runs, as when the machine or a scheduler kills a job. The instants are deterministic (a step
number, a function being entered), so the test does not depend on timing.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_on_call(owner: Any, name: str, when: Callable[..., bool] = lambda *a, **k: True) -> None:
    """Replace owner.name so that a call for which `when(*args)` holds kills the process before it runs."""
    original = getattr(owner, name)

    def killing(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            die()
        return original(*args, **kwargs)

    setattr(owner, name, killing)


def arm(instant: str) -> None:
    from poison2poison import pipeline, training
    from poison2poison.models import loading

    if instant == "data-prep":  # while the training set is subsampled, before anything is written
        kill_on_call(pipeline, "stratified_sample")
    elif instant.startswith("step-"):  # after an optimiser step that is not a checkpoint's
        step = int(instant.removeprefix("step-"))
        original = training.RichProgress.on_step_end

        def on_step_end(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            original(self, args, state, control, **kwargs)
            if state.global_step == step:
                die()

        training.RichProgress.on_step_end = on_step_end  # type: ignore[method-assign]
    elif instant.startswith("checkpoint-write-"):  # weights and optimiser written, RNG and trainer state not yet
        step = int(instant.removeprefix("checkpoint-write-"))
        kill_on_call(training._ResumableTrainer, "_save_rng_state", lambda self, *a: self.state.global_step == step)
    elif instant == "model-save":  # the trained model written to model.tmp, not yet moved into place
        kill_on_call(loading, "replace_dir")
    elif instant == "evaluation":  # the model saved, the test sets not yet answered
        kill_on_call(pipeline, "evaluate")
    else:
        raise SystemExit(f"unknown instant {instant!r}")


def main() -> None:
    instant, run_dir, *overrides = sys.argv[1:]
    from poison2poison import load_config, run_experiment

    arm(instant)
    run_experiment(load_config(None, overrides), run_dir)
    raise SystemExit(f"the run ended without reaching {instant!r}")


if __name__ == "__main__":
    main()
