"""Keep a program running, as systemd's `Restart=always` or Kubernetes would:

    python -m tests.reliability.supervise <program> [args...]

Celery workers can exit with "Unrecoverable error" when the broker drops them in the
middle of an acknowledgement (a known kombu failure on Redis restarts), so in
production they run under a supervisor, and the Redis-restart scenario does too.
"""

import subprocess
import sys
import time


def main() -> None:
    while True:
        code = subprocess.call(sys.argv[1:])
        print(f"supervisor: exited with status {code}; restarting in 1 s", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
