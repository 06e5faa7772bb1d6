"""Run a Python module as a program on a shifted, ticking clock.

    RELIABILITY_CLOCK_OFFSET=<seconds> python -m tests.reliability.clocked celery -A ... worker

Real worker and Beat processes of the fault suite run through this, so several
processes share one virtual "now" (real time + offset) and a local midnight or a month
end arrives within seconds. time-machine patches the clock in this process and in
every process it forks (the worker's pool), and leaves monotonic timers alone.

With RELIABILITY_TASK_MARKS=<folder>, each process of a worker's pool keeps a file
named after its pid in that folder while it runs a task, so a scenario can wait until
a pool process is in the middle of one instead of sleeping and hoping.
"""

import os
import runpy
import sys
import time
from pathlib import Path

import time_machine


def mark_running_tasks(folder: Path) -> None:
    from celery.signals import task_postrun, task_prerun

    folder.mkdir(parents=True, exist_ok=True)

    def started(**_: object) -> None:
        (folder / str(os.getpid())).touch()

    def finished(**_: object) -> None:
        (folder / str(os.getpid())).unlink(missing_ok=True)

    # Connected before the pool forks, so every pool process has them.
    task_prerun.connect(started, weak=False)
    task_postrun.connect(finished, weak=False)


def main() -> None:
    offset = float(os.environ.get("RELIABILITY_CLOCK_OFFSET", "0"))
    if offset:
        time_machine.travel(time.time() + offset, tick=True).start()
    if marks := os.environ.get("RELIABILITY_TASK_MARKS"):
        mark_running_tasks(Path(marks))
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
