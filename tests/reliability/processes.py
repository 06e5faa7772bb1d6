"""Real processes for the fault suite: a private Redis server, Celery workers and Beats.

Each runs as its own OS process against the test database and a Redis server that
the test owns (started on a free port, so it can be killed and restarted without
touching anyone else's). Output goes to a log file per process; tests read the logs
for what only the logs say (a duplicate reset that changed nothing, a reconnect).
"""

import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import TypedDict, TypeVar, Unpack

import pytest
import redis
from django.conf import settings
from django.db import connection, connections
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "var" / "reliability"


def report(figures: str) -> None:
    """Print a scenario's measured figures and keep them in var/reliability/figures.txt
    (one line per run, newest last) for docs/RELIABILITY.md."""
    LOGS.mkdir(parents=True, exist_ok=True)
    line = f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]} | " + " ".join(
        figures.split()
    )
    with (LOGS / "figures.txt").open("a") as out:
        out.write(line + "\n")
    print("\n" + line)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"  # nobody listens once closed


def database_url() -> str:
    """The URL of the database this test runs against, for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def require_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; install it (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class RedisServer:
    """A throwaway Redis that keeps nothing on disk, as in production without persistence."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [require_program("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(client), "Redis answering", 10)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def queued(self) -> int:
        """Messages waiting in the default queue plus those taken but unacknowledged."""
        client = self.client()
        return int(client.llen("celery")) + int(client.hlen("unacked"))


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@dataclass
class Program:
    """A worker or Beat process (own session, so its pool dies with it at the end)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the main process only (its pool children are orphaned)."""
        if self.process.poll() is None:
            os.kill(self.pid, sig)
            self.process.wait(timeout=60)

    def stop(self) -> None:
        """Kill the whole process group: the main process and any orphans of it."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    @property
    def tasks(self) -> Path:
        """Where its pool processes mark the tasks they run (tests/reliability/clocked.py)."""
        return self.log.with_suffix(".tasks")

    def running(self) -> set[int]:
        """The pids of its pool processes that are running a task now."""
        return {int(mark.name) for mark in self.tasks.glob("*")} if self.tasks.exists() else set()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))


def start_celery(
    name: str,
    *args: str,
    broker: str,
    offset: float = 0,
    env: dict[str, str] | None = None,
    supervised: bool = False,
) -> Program:
    """Start `celery -A ad_budget_project <args>` against the test database and `broker`,
    with its clock `offset` seconds ahead of the real one; `supervised`: restarted
    whenever it exits (tests/reliability/supervise.py)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    shutil.rmtree(log.with_suffix(".tasks"), ignore_errors=True)  # a previous run's marks
    environment = os.environ | {
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": broker,
        "RELIABILITY_CLOCK_OFFSET": str(offset),
        "PYTHONUNBUFFERED": "1",
        # The scenarios count Celery's "received" and Beat's "Sending due task" lines.
        "LOG_EVERY_TASK": "1",
        "RELIABILITY_TASK_MARKS": str(log.with_suffix(".tasks")),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*([sys.executable, "-m", "tests.reliability.supervise"] if supervised else []),
             sys.executable, "-m", "tests.reliability.clocked", "celery",
             "-A", "ad_budget_project", *args],
            cwd=ROOT, env=environment | (env or {}), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    return Program(name=name, process=process, log=log)


class CeleryOptions(TypedDict, total=False):
    """start_celery's optional keywords, for the functions that pass them on."""

    offset: float
    env: dict[str, str] | None
    supervised: bool


def start_worker(name: str, *, broker: str, **options: Unpack[CeleryOptions]) -> Program:
    return start_celery(
        name, "worker", "--loglevel", "INFO", "--pool", "prefork", "--concurrency", "2",
        "--without-mingle", "--without-gossip", "--hostname", f"{name}@%h",
        broker=broker, **options,
    )  # fmt: skip


def start_beat(name: str, *, broker: str, offset: float = 0) -> Program:
    return start_celery(
        name, "beat", "--loglevel", "INFO", "--max-interval", "1", broker=broker, offset=offset
    )


@contextmanager
def programs() -> Iterator[list[Program]]:
    """Collects started programs and kills every one of them at the end."""
    started: list[Program] = []
    try:
        yield started
    finally:
        for program in started:
            program.stop()


def every_second(*task_names: str) -> None:
    """Store Beat's schedule: the named tasks every second, every other default off
    (stored, so Beat's defaults-once scheduler does not add them back)."""
    second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        PeriodicTask.objects.create(
            name=name,
            task=str(entry["task"]),
            interval=second,
            enabled=entry["task"] in task_names,
        )


fork = multiprocessing.get_context("fork")
M = TypeVar("M")


def run_processes(
    target: Callable[..., None],
    args: Sequence[tuple[object, ...]],
    outbox: "Queue[M]",
    *,
    timeout: float = 120,
) -> list[M]:
    """Fork one process per argument tuple (each also gets `outbox` as its last
    argument), read what they put on it while they run, and fail on a crash or a hang."""
    connections.close_all()  # children must open their own connections
    processes = [fork.Process(target=target, args=(*a, outbox)) for a in args]
    for process in processes:
        process.start()
    messages: list[M] = []
    deadline = monotonic() + timeout
    # Read while they run: a child cannot exit before its queued messages are read.
    while any(p.is_alive() for p in processes) and monotonic() < deadline:
        with suppress(Empty):
            messages.append(outbox.get(timeout=0.1))
    hung = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join()
    while True:
        try:
            messages.append(outbox.get(timeout=0.2))
        except Empty:
            break
    assert not hung, f"processes {hung} still running after {timeout} s: a hang"
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return messages
