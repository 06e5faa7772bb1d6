"""Run a Python module as a program on a shifted, ticking clock.

    RELIABILITY_CLOCK_OFFSET=<seconds> python -m tests.reliability.clocked celery -A ... worker

Real worker and Beat processes of the fault suite run through this, so several
processes share one virtual "now" (real time + offset) and a local midnight or a month
end arrives within seconds. time-machine patches the clock in this process and in
every process it forks (the worker's pool), and leaves monotonic timers alone.
"""

import os
import runpy
import sys
import time

import time_machine


def main() -> None:
    offset = float(os.environ.get("RELIABILITY_CLOCK_OFFSET", "0"))
    if offset:
        time_machine.travel(time.time() + offset, tick=True).start()
    sys.argv = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
