"""Benchmarks: the system against the raw database, measured in the same run.

`python -m benchmarks` measures the database DATABASE_URL points at (SQLite by
default), in a throwaway database it creates and drops. `make bench` runs it on SQLite
and on PostgreSQL and prints one table. Figures, not verdicts: targets are in
docs/PERFORMANCE.md. Outside the product: nothing in ads/ imports it.

Django must be set up before this module is imported (`benchmarks/__main__.py` does).
"""

import argparse
import http.client
import json
import logging
import multiprocessing
import os
import platform
import sqlite3
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from datetime import time as clock
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from django.conf import settings
from django.db import connection, connections
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from ads.models import (
    Brand,
    BudgetAlert,
    Campaign,
    CampaignStatusChange,
    DeliveryStatus,
    Event,
    Schedule,
    ScheduleWindow,
    SpendEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from ads.rules import CampaignFacts, pause_reasons, schedule_allows, weekday_mask
from ads.services import SpendInput, record_spend, record_spend_batch, refresh_campaign_states
from ads.services.webhooks import new_secret, request_body, send_due, signed_headers

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ZONES = [
    "UTC", "Europe/London", "Europe/Paris", "Europe/Helsinki", "Europe/Moscow",
    "Asia/Dubai", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Shanghai", "Asia/Tokyo",
    "Australia/Sydney", "Australia/Lord_Howe", "Pacific/Auckland", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo",
    "America/St_Johns", "Africa/Nairobi",
]  # fmt: skip
fork = multiprocessing.get_context("fork")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark spend recording, enforcement and webhook delivery against raw-SQL, "
        "per-row and bare-HTTP baselines.",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes (no 100,000-campaign pass)"
    )
    parser.add_argument(
        "--report",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="only print the table of earlier runs' JSON files",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    options = arguments().parse_args(argv)
    if options.report:
        runs = [json.loads(path.read_text()) for path in options.report if path.exists()]
        print(render_table(runs))
        return
    logging.getLogger("ads").setLevel(logging.WARNING)  # one line per change is noise here
    Bench().run(quick=options.quick, json_path=options.json)


class Bench:
    def run(self, *, quick: bool, json_path: Path | None) -> None:
        vendor = connection.vendor
        figures: dict[str, Any] = {"backend": vendor, "machine": machine(), "results": []}
        with throwaway_database():
            self.say(f"benchmarking {vendor} in a throwaway database")
            figures["results"] += self.single_spend(300 if quick else 1000)
            figures["results"] += self.bulk_spend(10_000, single=figures["results"][0]["value"])
            if vendor == "postgresql":
                figures["results"] += self.concurrent_spend(8, 100 if quick else 250)
            # Before the enforcement passes leave 100,000 campaigns' rows behind them.
            figures["results"] += self.webhooks(300 if quick else 1000)
            sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
            figures["results"] += self.enforcement(sizes)
        print(render_table([figures]))
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(figures, indent=2, default=str))
            self.say(f"figures written to {json_path}")

    def say(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    # --- single spend ---------------------------------------------------------------

    def single_spend(self, events: int) -> list[dict[str, Any]]:
        campaign_ids = spend_setup("single")
        self.say(f"single spend: {events} record_spend calls, one transaction each")
        with counted_queries() as one:
            record_spend(campaign_ids[0], "0.01", idempotency_key="probe", at=NOW)
        started = time.perf_counter()
        for n in range(events):
            record_spend(campaign_ids[n % 3], "0.01", idempotency_key=f"s-{n}", at=NOW)
        ours = events / (time.perf_counter() - started)
        self.say(f"single spend: raw {connection.vendor} baseline, the same statements")
        raw = raw_single_spend(campaign_ids, events)
        return [
            result("single spend", "events/s", ours, raw, f"{one.count} statements per event"),
        ]

    # --- bulk spend -----------------------------------------------------------------

    def bulk_spend(self, events: int, *, single: float) -> list[dict[str, Any]]:
        campaign_ids = spend_setup("bulk")
        batch = [
            SpendInput(campaign_ids[n % 3], "0.01", idempotency_key=f"b-{n}") for n in range(events)
        ]
        self.say(f"bulk spend: record_spend_batch of {events:,} events")
        started = time.perf_counter()
        outcome = record_spend_batch(batch, at=NOW)
        ours = events / (time.perf_counter() - started)
        assert outcome.recorded == events
        total = Brand.objects.get(name="bulk").current_daily_spend
        assert total == Decimal("0.01") * events, total
        return [
            result(
                f"bulk spend ({events:,} events)",
                "events/s",
                ours,
                single,
                "one record_spend_batch call",
                baseline_name="single-spend path",
            )
        ]

    # --- concurrent spend (PostgreSQL) ----------------------------------------------

    def concurrent_spend(self, processes: int, per_process: int) -> list[dict[str, Any]]:
        results = []
        for brands in (1, 100):
            campaign_ids = [c for b in range(brands) for c in spend_setup(f"c{brands}-{b}")[:1]]
            self.say(f"concurrent spend: {processes} processes x {per_process}, {brands} brand(s)")
            ours = run_concurrently(processes, ours_worker, campaign_ids, per_process)
            expected = Decimal("0.01") * processes * per_process
            counted = Brand.objects.filter(name__startswith=f"c{brands}-").aggregate(
                total=Sum("current_daily_spend")
            )["total"]
            ledger = SpendEvent.objects.filter(campaign_id__in=campaign_ids).aggregate(
                total=Sum("amount")
            )["total"]
            exact = counted == ledger == expected
            raw = run_concurrently(processes, raw_worker, campaign_ids, per_process)
            results.append(
                result(
                    f"concurrent spend, {processes} processes, {brands} brand(s)",
                    "events/s",
                    ours,
                    raw,
                    f"totals exact: {'yes' if exact else 'NO'} ({counted} = {ledger})",
                )
            )
            if not exact:
                raise AssertionError(f"concurrent totals differ: {counted}, {ledger}, {expected}")
        return results

    # --- enforcement ----------------------------------------------------------------

    def enforcement(self, sizes: Sequence[int]) -> list[dict[str, Any]]:
        results = []
        for size in sizes:
            self.say(f"enforcement: building {size:,} campaigns in 20 zones")
            build_campaigns(size)
            refresh_campaign_states(at=NOW, actor="bench")  # first pass: roll-over, all start
            Brand.objects.update(daily_budget=Decimal(0))
            self.say(f"enforcement: pass over {size:,} campaigns, all of them change")
            with counted_queries() as changing:
                seconds = timed(lambda: refresh_campaign_states(at=NOW, actor="bench"))
            with counted_queries() as idle:
                idle_seconds = timed(lambda: refresh_campaign_states(at=NOW, actor="bench"))
            baseline = None
            if size <= 10_000:
                Brand.objects.update(daily_budget=Decimal(100))
                self.say(f"enforcement: per-row baseline over {size:,} campaigns (load, save)")
                baseline = timed(lambda: per_row_pass(NOW))
            results.append(
                result(
                    f"enforcement, {size:,} campaigns",
                    "seconds",
                    seconds,
                    baseline,
                    f"{changing.count} queries",
                    lower_is_better=True,
                )
            )
            results.append(
                result(
                    f"enforcement, {size:,} campaigns, nothing changes",
                    "seconds",
                    idle_seconds,
                    None,
                    f"{idle.count} queries, {idle.writes} rows written",
                    lower_is_better=True,
                )
            )
            if size == max(sizes):
                Brand.objects.update(daily_budget=Decimal(100))
                self.say(f"enforcement: peak memory of a pass over {size:,} campaigns")
                tracemalloc.start()
                refresh_campaign_states(at=NOW, actor="bench")
                peak = tracemalloc.get_traced_memory()[1] / 2**20
                tracemalloc.stop()
                results.append(
                    result(
                        f"enforcement memory, {size:,} campaigns",
                        "MB (peak)",
                        peak,
                        None,
                        "Python allocations (tracemalloc)",
                        lower_is_better=True,
                    )
                )
            clear_campaigns()
        return results

    # --- webhooks -------------------------------------------------------------------

    def webhooks(self, events: int) -> list[dict[str, Any]]:
        settings.WEBHOOK_ALLOW_HTTP = settings.WEBHOOK_ALLOW_PRIVATE = True  # loopback
        settings.WEBHOOK_TIMEOUT = BENCH_WEBHOOK_TIMEOUT
        results = []
        with local_receiver() as url:
            results.append(self.delivery_rate(url, events))
            results.append(self.event_cost(url, 200))
            results.append(self.dead_endpoint(url))
        return results

    def delivery_rate(self, url: str, events: int) -> dict[str, Any]:
        endpoint = WebhookEndpoint.objects.create(
            name="rate", url=f"{url}/ok", all_types=True, all_brands=True, secret=new_secret()
        )
        brand = Brand.objects.create(
            name="hooks", daily_budget=Decimal(100), monthly_budget=Decimal(3000)
        )
        Campaign.objects.bulk_create(Campaign(brand=brand, name=f"h{n}") for n in range(events))
        refresh_campaign_states(at=NOW, actor="bench", brand_ids=[brand.pk])  # all start
        planned = WebhookDelivery.objects.filter(endpoint=endpoint).count()
        self.say(f"webhooks: {planned:,} deliveries to a local receiver, one by one")
        with counted_queries() as queries:
            seconds = timed(lambda: send_due(endpoint_id=endpoint.pk, run_seconds=3600))
        sent = WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.DELIVERED)
        if sent.count() != planned:
            raise AssertionError(f"{sent.count()} of {planned} webhooks delivered")
        self.say("webhooks: bare HTTP POSTs of the same requests, same receiver")
        raw = bare_posts(endpoint, f"{url}/ok")
        endpoint.delete()
        return result(
            "webhook deliveries to a local receiver",
            "events/s",
            planned / seconds,
            raw,
            f"{queries.count / planned:.1f} statements per delivery; signed, in order",
            baseline_name="bare HTTP POSTs",
        )

    def event_cost(self, url: str, spends: int) -> dict[str, Any]:
        """Spends that each pause a brand's 10 campaigns (13 events with the 3 alerts),
        with no endpoint enabled and with one taking every event: two rounds of each,
        alternating, the better of each kept (the first round warms the database up)."""
        rates: dict[str, float] = {"none": 0.0, "one": 0.0}
        alerts = logging.getLogger("ads.services.alerts")
        alerts.setLevel(logging.ERROR)  # 3 budget alerts a spend: not worth the lines
        for round_ in range(2):
            for label in rates:
                name = f"cost-{label}-{round_}"
                campaign_ids = pausing_brands(name, spends)
                endpoint = None
                if label == "one":
                    endpoint = WebhookEndpoint.objects.create(
                        name=name, url=f"{url}/ok", all_types=True, all_brands=True,
                        secret=new_secret(),
                    )  # fmt: skip
                self.say(f"webhooks: {spends} spends pausing 10 campaigns each, endpoints: {label}")
                started = time.perf_counter()
                for n, campaign_id in enumerate(campaign_ids):
                    record_spend(campaign_id, "1.00", idempotency_key=f"{name}-{n}", at=NOW)
                rates[label] = max(rates[label], spends / (time.perf_counter() - started))
                if endpoint is not None:
                    planned = WebhookDelivery.objects.filter(endpoint=endpoint).count()
                    if planned != spends * 13:
                        raise AssertionError(f"{planned} deliveries planned, {spends * 13} events")
                    endpoint.delete()
        alerts.setLevel(logging.NOTSET)
        per_event = (1 / rates["one"] - 1 / rates["none"]) / 13 * 1000
        return result(
            "spend pausing 10 campaigns (13 events), one endpoint",
            "spends/s",
            rates["one"],
            rates["none"],
            f"{per_event:+.3f} ms per event planned for delivery",
            baseline_name="no endpoint",
        )

    def dead_endpoint(self, url: str) -> dict[str, Any]:
        """A receiver that never answers, with 100 events waiting for it: its worker is
        held for one timeout, not one per event, and other endpoints' workers not at all."""
        dead = WebhookEndpoint.objects.create(
            name="dead", url=f"{url}/hang", all_types=True, all_brands=True, secret=new_secret()
        )
        brand = Brand.objects.create(
            name="dead", daily_budget=Decimal(100), monthly_budget=Decimal(3000)
        )
        Campaign.objects.bulk_create(Campaign(brand=brand, name=f"d{n}") for n in range(100))
        refresh_campaign_states(at=NOW, actor="bench", brand_ids=[brand.pk])
        self.say("webhooks: a run for a receiver that never answers, 100 events waiting")
        seconds = timed(lambda: send_due(endpoint_id=dead.pk, run_seconds=3600))
        dead.delete()
        return result(
            "dead endpoint's run (100 events waiting)",
            "seconds",
            seconds,
            BENCH_WEBHOOK_TIMEOUT,
            "stops at the first failure; retried later",
            lower_is_better=True,
            baseline_name="WEBHOOK_TIMEOUT",
        )


# --- Helpers --------------------------------------------------------------------------


def result(
    name: str,
    unit: str,
    value: float,
    baseline: float | None,
    note: str = "",
    *,
    lower_is_better: bool = False,
    baseline_name: str = "",
) -> dict[str, Any]:
    ratio = None
    if baseline:
        ratio = baseline / value if lower_is_better else value / baseline
    return {
        "name": name,
        "unit": unit,
        "value": round(value, 3),
        "baseline": round(baseline, 3) if baseline else None,
        "baseline_name": baseline_name or ("per-row loop" if lower_is_better else "raw SQL"),
        "ratio": round(ratio, 2) if ratio else None,
        "note": note,
    }


def render_table(runs: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| backend | measurement | ours | baseline | ratio | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        for r in run["results"]:
            baseline = (
                f"{r['baseline']:,.3f} ({r['baseline_name']})" if r["baseline"] is not None else "-"
            )
            ratio = f"{r['ratio']:,.2f} x" if r["ratio"] is not None else "-"
            lines.append(
                f"| {run['backend']} | {r['name']} | {r['value']:,.3f} {r['unit']} | {baseline} "
                f"| {ratio} | {r['note']} |"
            )
    return "\n".join(lines)


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def machine() -> dict[str, str]:
    cpu = cpu_name()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sqlite_version()" if connection.vendor == "sqlite" else "SHOW server_version"
        )
        server = cursor.fetchone()[0]
    return {
        "cpu": cpu,
        "cores": str(multiprocessing.cpu_count()),
        "python": platform.python_version(),
        "database": f"{connection.vendor} {server}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@contextmanager
def throwaway_database() -> Iterator[None]:
    test_settings = connection.settings_dict.setdefault("TEST", {})
    test_settings["NAME"] = (
        str(settings.VAR_DIR / "bench.sqlite3")
        if connection.vendor == "sqlite"
        # Another name lets two checkouts bench against one server at once.
        else os.environ.get("BENCH_PG_DATABASE", "ad_budget_bench")
    )
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def spend_setup(name: str) -> list[int]:
    brand = Brand.objects.create(
        name=name, daily_budget=Decimal("1000000"), monthly_budget=Decimal("1000000")
    )
    campaigns = [Campaign.objects.create(brand=brand, name=f"{name} {n}") for n in range(3)]
    refresh_campaign_states(at=NOW, actor="bench")
    return [c.pk for c in campaigns]


def is_savepoint(sql: str) -> bool:
    return sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))


class _Counter:
    count = 0
    writes = 0


@contextmanager
def counted_queries() -> Iterator[_Counter]:
    counter = _Counter()
    connection.queries_log.clear()  # a full log (9,000 entries) would capture nothing
    with CaptureQueriesContext(connection) as captured:
        yield counter
    real = [q["sql"] for q in captured.captured_queries if not is_savepoint(q["sql"])]
    counter.count = len(real)
    counter.writes = len([sql for sql in real if sql.startswith(("INSERT", "UPDATE", "DELETE"))])


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def build_campaigns(size: int) -> None:
    """`size` campaigns, ten per brand, brands over 20 zones, half on a schedule."""
    schedule = Schedule.objects.create(name=f"bench {size}")
    ScheduleWindow.objects.create(
        schedule=schedule, weekdays=weekday_mask(range(5)), start=clock(6), end=clock(22)
    )
    brands = Brand.objects.bulk_create(
        Brand(
            name=f"enf{size}-{n}",
            timezone=ZONES[n % 20],
            daily_budget=Decimal(100),
            monthly_budget=Decimal(3000),
        )
        for n in range(size // 10)
    )
    Campaign.objects.bulk_create(
        (
            Campaign(brand=brands[n // 10], name=f"c{n}", schedule=schedule if n % 2 else None)
            for n in range(size)
        ),
        batch_size=5000,
    )


def clear_campaigns() -> None:
    """Remove what build_campaigns made (it holds no spend), for the next size."""
    CampaignStatusChange.objects.filter(campaign__brand__name__startswith="enf").delete()
    BudgetAlert.objects.filter(brand__name__startswith="enf").delete()
    Campaign.objects.filter(brand__name__startswith="enf").delete()
    Brand.objects.filter(name__startswith="enf").delete()
    Schedule.objects.filter(name__startswith="bench").delete()


def per_row_pass(at: datetime) -> None:
    """The naive enforcement the original pseudo-code describes: load every campaign,
    decide, save() it; a query or two per campaign."""
    for campaign_id in Campaign.objects.values_list("pk", flat=True):
        campaign = Campaign.objects.select_related("brand", "schedule").get(pk=campaign_id)
        brand = campaign.brand
        windows = campaign.schedule.rule_windows() if campaign.schedule else None
        reasons = pause_reasons(
            CampaignFacts(
                is_enabled=campaign.is_enabled,
                brand_is_active=brand.is_active,
                brand_daily_budget=brand.daily_budget,
                brand_daily_spend=brand.current_daily_spend,
                brand_monthly_budget=brand.monthly_budget,
                brand_monthly_spend=brand.current_monthly_spend,
                daily_budget=campaign.daily_budget,
                daily_spend=campaign.daily_spend,
                in_schedule=schedule_allows(windows, at, brand.zone),
            )
        )
        campaign.is_active = not reasons
        campaign.pause_reasons = reasons
        campaign.save()


# --- Raw baselines: the same statements, straight through the driver ----------------


RAW_STATEMENTS = {
    "lock": "SELECT id, timezone, counters_day, counters_month FROM ads_brand WHERE id = {p}{lock}",
    "key": "SELECT id FROM ads_spendevent WHERE idempotency_key = {p}",
    "insert": (
        "INSERT INTO ads_spendevent (campaign_id, brand_id, amount, occurred_at, recorded_at, "
        "source, idempotency_key) VALUES ({p}, {p}, {p}, {p}, {p}, 'cli', {p})"
    ),
    "brand": (
        "UPDATE ads_brand SET current_daily_spend = current_daily_spend + {p}, "
        "current_monthly_spend = current_monthly_spend + {p} WHERE id = {p}"
    ),
    "campaign": "UPDATE ads_campaign SET daily_spend = daily_spend + {p} WHERE id = {p}",
    "state": (
        "SELECT c.id, c.is_enabled, c.is_active, c.pause_reasons, c.daily_budget, c.daily_spend, "
        "c.schedule_id, b.is_active, b.daily_budget, b.current_daily_spend, b.monthly_budget, "
        "b.current_monthly_spend FROM ads_campaign c JOIN ads_brand b ON b.id = c.brand_id "
        "WHERE c.brand_id = {p}"
    ),
}


def raw_event(cursor: Any, p: str, lock: str, campaign_id: int, brand_id: int, key: str) -> None:
    sql = {name: text.format(p=p, lock=lock) for name, text in RAW_STATEMENTS.items()}
    when = NOW.isoformat() if p == "?" else NOW
    cursor.execute(sql["lock"], [brand_id])
    cursor.fetchall()
    cursor.execute(sql["key"], [key])
    cursor.fetchall()
    cursor.execute(sql["insert"], [campaign_id, brand_id, 10_000, when, when, key])
    cursor.execute(sql["brand"], [10_000, 10_000, brand_id])
    cursor.execute(sql["campaign"], [10_000, campaign_id])
    cursor.execute(sql["state"], [brand_id])
    cursor.fetchall()


def raw_single_spend(campaign_ids: Sequence[int], events: int) -> float:
    brand_of = dict(Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "brand_id"))
    with raw_connection() as (conn, p, lock, begin):
        cursor = conn.cursor()
        started = time.perf_counter()
        for n in range(events):
            campaign_id = campaign_ids[n % len(campaign_ids)]
            cursor.execute(begin)
            raw_event(cursor, p, lock, campaign_id, brand_of[campaign_id], f"raw-{n}")
            cursor.execute("COMMIT")
        return events / (time.perf_counter() - started)


@contextmanager
def raw_connection() -> Iterator[tuple[Any, str, str, str]]:
    """A driver connection to the benchmark database with the project's durability
    settings, not Django's: (connection, placeholder, row lock, BEGIN statement)."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        lite = sqlite3.connect(settings_dict["NAME"], isolation_level=None, timeout=20)
        lite.execute("PRAGMA journal_mode=WAL")
        try:
            yield lite, "?", "", "BEGIN IMMEDIATE"
        finally:
            lite.close()
    else:
        conninfo = psycopg.conninfo.make_conninfo(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"] or None,
            password=settings_dict["PASSWORD"] or None,
            host=settings_dict["HOST"] or None,
            port=settings_dict["PORT"] or None,
        )
        with psycopg.connect(conninfo, autocommit=True) as raw:
            yield raw, "%s", " FOR UPDATE", "BEGIN"


def ours_worker(campaign_ids: Sequence[int], worker: int, count: int) -> None:
    try:
        for n in range(count):
            record_spend(
                campaign_ids[(worker + n) % len(campaign_ids)],
                "0.01",
                idempotency_key=f"ours-{len(campaign_ids)}-{worker}-{n}",
                at=NOW,
            )
    finally:
        connections.close_all()


def raw_worker(campaign_ids: Sequence[int], worker: int, count: int) -> None:
    brand_of = dict(Campaign.objects.filter(pk__in=campaign_ids).values_list("pk", "brand_id"))
    connections.close_all()
    with raw_connection() as (conn, p, lock, begin):
        cursor = conn.cursor()
        for n in range(count):
            campaign_id = campaign_ids[(worker + n) % len(campaign_ids)]
            cursor.execute(begin)
            raw_event(
                cursor,
                p,
                lock,
                campaign_id,
                brand_of[campaign_id],
                f"raw-{len(campaign_ids)}-{worker}-{n}",
            )
            cursor.execute("COMMIT")


def run_concurrently(
    processes: int, target: Callable[..., None], campaign_ids: Sequence[int], per_process: int
) -> float:
    connections.close_all()
    workers = [
        fork.Process(target=target, args=(campaign_ids, w, per_process)) for w in range(processes)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if any(w.exitcode for w in workers):
        raise RuntimeError("a benchmark process failed")
    return processes * per_process / elapsed


# --- Webhooks: a receiver in a child process, and bare HTTP --------------------------------

BENCH_WEBHOOK_TIMEOUT = 2.0


class _BenchReceiver(BaseHTTPRequestHandler):
    """Answers 204 to /ok after reading the body; never answers /hang."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/hang"):
            time.sleep(3600)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _serve(pipe: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BenchReceiver)
    server.daemon_threads = True
    pipe.send(server.server_address[1])
    server.serve_forever()


@contextmanager
def local_receiver() -> Iterator[str]:
    """An HTTP receiver on loopback in a child process (no share of this one's GIL)."""
    ours, theirs = fork.Pipe()
    child = fork.Process(target=_serve, args=(theirs,), daemon=True)
    connections.close_all()
    child.start()
    try:
        yield f"http://127.0.0.1:{ours.recv()}"
    finally:
        child.terminate()
        child.join()


def bare_posts(endpoint: WebhookEndpoint, url: str) -> float:
    """The same requests (bodies and headers made beforehand) POSTed with http.client,
    one connection each as ours: the HTTP floor under the delivery rate."""
    requests: list[tuple[bytes, dict[str, str]]] = []
    for event in Event.objects.filter(deliveries__endpoint=endpoint).order_by("pk"):
        text = request_body(endpoint, event)
        headers = {"Content-Type": "application/json", "Connection": "close"}
        signed = signed_headers(endpoint.secret, event.event_id, text, at=NOW)
        requests.append((text.encode(), headers | signed))
    parts = urlsplit(url)
    started = time.perf_counter()
    for body, headers in requests:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        conn.request("POST", parts.path, body=body, headers=headers)
        if conn.getresponse().status != 204:
            raise AssertionError("the receiver did not take a bare POST")
        conn.close()
    return len(requests) / (time.perf_counter() - started)


def pausing_brands(name: str, count: int) -> list[int]:
    """`count` brands of 10 running campaigns, daily budget 1.00: one campaign of each."""
    brands = Brand.objects.bulk_create(
        Brand(name=f"{name}-{n}", daily_budget=Decimal(1), monthly_budget=Decimal(1000))
        for n in range(count)
    )
    Campaign.objects.bulk_create(
        Campaign(brand=brand, name=f"{brand.name} {n}") for brand in brands for n in range(10)
    )
    refresh_campaign_states(at=NOW, actor="bench", brand_ids=[b.pk for b in brands])
    first: dict[int, int] = {}
    for pk, brand_id in (
        Campaign.objects.filter(brand__in=brands).order_by("pk").values_list("pk", "brand_id")
    ):
        first.setdefault(brand_id, pk)
    return list(first.values())
