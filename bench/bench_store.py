"""Benchmark: charged job decisions per second through the store, on SQLite and PostgreSQL.

For each engine it measures, with 1, 16 and 64 concurrent submitters:

- `JobService.submit` (pcnet.app.services.jobs, through the service layer as the server runs
  it: validation by the rules, the actor, the change events): the whole Application Server
  core of a print job, the decision and its charge and job log row (`store.record_job`, one
  DB transaction);
- `store.record_job` alone, with a ready-made job and charge;
- the bare baseline of /work/shared/baselines/store_txn.py on the same engine: a transaction
  of one INSERT plus one balance UPDATE (SQLite: adbapi, one connection, WAL,
  synchronous=FULL; PostgreSQL: txpostgres pool of the same size, two statements in
  runInteraction);

and prints rates, p50/p99 latency and the ratio of the job rate to the baseline rate. Jobs are
spread over --users personal accounts (1000 by default) on one printer, every one charged.

    .venv/bin/python bench/bench_store.py                       # both engines
    .venv/bin/python bench/bench_store.py --engines sqlite --jobs 3000
    .venv/bin/python bench/bench_store.py --pg postgresql://postgres@127.0.0.1:5432/postgres

PostgreSQL runs in a fresh database created (and dropped) through the --pg admin address.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task

from pcnet.domain.model import (
    JobAction,
    JobRecord,
    JobRequest,
    JobStatus,
    LedgerEntry,
    TransactionKind,
)
from pcnet.store import open_store

LEVELS = (1, 16, 64)


class Result:
    def __init__(self, label, n, concurrency, seconds, latencies):
        self.label = label
        self.n = n
        self.concurrency = concurrency
        self.rate = n / seconds
        latencies = sorted(latencies)
        self.p50 = statistics.median(latencies) * 1000
        self.p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000

    def line(self):
        return (f"  {self.label:<34} c={self.concurrency:<3} {self.n:>6} ops  {self.rate:>7.0f}/s"
                f"   p50 {self.p50:6.2f} ms   p99 {self.p99:6.2f} ms")


async def measure(label, n, concurrency, op):
    """Run op(i) for i in range(n) with `concurrency` workers; a bounded loop."""
    latencies = []
    counter = iter(range(n))

    async def worker():
        for i in counter:
            t0 = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(concurrency)],
                              consumeErrors=True)
    return Result(label, n, concurrency, time.perf_counter() - t0, latencies)


async def populate(store, users):
    printer = await store.create_printer("bench-printer", server="bench", queue="q")
    sem = defer.DeferredSemaphore(32)
    created = await defer.gatherResults([
        sem.run(store.create_user, f"user{i:05d}", initial_balance=Decimal(1_000_000))
        for i in range(users)])
    return printer, created


def job_service(store, reactor):
    """The job service as the Application Server runs it: through the service layer (with its
    change bus and a subscriber that forgets what changes), or, on a tree from before the
    service layer (a baseline checkout), the job service of then."""
    try:
        from pcnet.app.services import Services
    except ImportError:
        try:
            from pcnet.app.jobs import JobService
        except ImportError:
            return None
        old = JobService(store, reactor)

        class Old:
            directory = old.directory

            def submit(self, request):
                return old.submit(request, origin="bench")

        return Old()
    from pcnet.app.services import Actor

    jobs = Services(store, reactor).jobs
    provider = Actor.for_node("provider", "bench", "192.0.2.1")   # as pcnet/1 job.submit calls it

    class AsTheProvider:
        directory = jobs.directory

        def submit(self, request):
            return jobs.submit(request, provider)

    return AsTheProvider()


async def bench_store(store, reactor, jobs, users, label):
    printer, people = await populate(store, users)
    service = job_service(store, reactor)
    results = []
    run_id = uuidlib.uuid4().hex[:8]

    if service is not None:
        # Warm the service's directory cache as a running server would have it.
        for u in people:
            await service.directory.user(u.username)
            await service.directory.account(u.personal_account_id)
        for level in LEVELS:
            n = jobs if level > 1 else max(200, jobs // 5)

            async def submit(i, level=level):
                u = people[i % len(people)]
                decision, _ = await service.submit(JobRequest(
                    username=u.username, printer_id=printer.id, pages=2, colour_pages=1,
                    document_name=f"doc {i}", client="bench", uuid=f"{run_id}-s{level}-{i}"))
                assert decision.action is JobAction.PRINT, decision

            results.append(await measure(f"{label} JobService.submit", n, level, submit))

    for level in LEVELS:
        n = jobs if level > 1 else max(200, jobs // 5)

        async def record(i, level=level):
            u = people[i % len(people)]
            job_uuid = f"{run_id}-r{level}-{i}"
            job = JobRecord(uuid=job_uuid, user_id=u.id, username=u.username, printer_id=printer.id,
                            account_id=u.personal_account_id, pages=2, colour_pages=1, duplex=False,
                            copies=1, paper_size="A4", document_name=f"doc {i}",
                            cost=Decimal("0.6000"), status=JobStatus.PRINTED)
            charge = LedgerEntry(uuid=f"{job_uuid}-charge", account_id=u.personal_account_id,
                                 amount=Decimal("-0.6000"), kind=TransactionKind.CHARGE,
                                 reference=job_uuid)
            await store.record_job(job, charge, guard=True)

        results.append(await measure(f"{label} store.record_job", n, level, record))
    return results


# --- baselines (as /work/shared/baselines/store_txn.py) ---------------------------------------

async def baseline_sqlite(directory, jobs):
    from twisted.enterprise import adbapi

    path = os.path.join(directory, "baseline.db")
    c = sqlite3.connect(path)
    c.execute("pragma journal_mode=wal")
    c.execute("create table acct (id integer primary key, bal integer)")
    c.executemany("insert into acct values (?, 0)", [(i,) for i in range(1, 1001)])
    c.execute("create table txn (id integer primary key, acct integer, amount integer)")
    c.commit()
    c.close()
    pool = adbapi.ConnectionPool("sqlite3", path, check_same_thread=False, cp_min=1, cp_max=1,
                                 cp_openfun=lambda c: c.execute("pragma synchronous=full"))

    def txn(cur, i):
        cur.execute("insert into txn (acct, amount) values (?, ?)", (i % 1000 + 1, i))
        cur.execute("update acct set bal = bal - ? where id = ?", (i, i % 1000 + 1))

    results = []
    try:
        for level in LEVELS:
            n = jobs if level > 1 else max(200, jobs // 5)
            results.append(await measure("sqlite baseline insert+update", n, level,
                                         lambda i: pool.runInteraction(txn, i)))
    finally:
        pool.close()
    return results


async def baseline_postgres(dsn, jobs, pool_size):
    from txpostgres import txpostgres

    p = txpostgres.ConnectionPool(None, dsn, min=pool_size)
    await p.start()
    await p.runOperation("create table bacct (id int primary key, bal bigint)")
    await p.runOperation("insert into bacct select g, 0 from generate_series(1, 1000) g")
    await p.runOperation("create table btxn (id bigserial primary key, acct int, amount bigint)")

    def txn(cur, i):
        d = cur.execute("insert into btxn (acct, amount) values (%s, %s)", (i % 1000 + 1, i))
        d.addCallback(lambda _: cur.execute("update bacct set bal = bal - %s where id = %s",
                                            (i, i % 1000 + 1)))
        return d

    results = []
    try:
        for level in LEVELS:
            n = jobs if level > 1 else max(200, jobs // 5)
            results.append(await measure("postgres baseline insert+update", n, level,
                                         lambda i: p.runInteraction(txn, i)))
    finally:
        p.close()
    return results


def report(engine, results, baselines):
    print(f"\n{engine}:")
    for r in baselines + results:
        print(r.line())
    base = {r.concurrency: r.rate for r in baselines}
    for r in results:
        if r.concurrency in base:
            print(f"  ratio {r.label:<28} c={r.concurrency:<3} {r.rate / base[r.concurrency]:5.2f} x baseline")


async def main(reactor, args):
    engines = args.engines.split(",")
    summary = []
    if "sqlite" in engines:
        directory = tempfile.mkdtemp(prefix="pcnet-bench-")
        try:
            store = open_store(f"sqlite:///{directory}/pcnet.db", reactor=reactor)
            await store.start()
            try:
                results = await bench_store(store, reactor, args.jobs, args.users, "sqlite")
            finally:
                await store.stop()
            baselines = await baseline_sqlite(directory, args.jobs)
            report("SQLite (WAL, synchronous=FULL)", results, baselines)
            summary.append(("sqlite", results, baselines))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    if "postgres" in engines:
        import psycopg2
        from psycopg2 import extensions

        name = f"pcnet_bench_{uuidlib.uuid4().hex[:10]}"
        admin = psycopg2.connect(args.pg)
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        params = extensions.parse_dsn(args.pg)
        params["dbname"] = name
        dsn = extensions.make_dsn(**params)
        try:
            store = open_store(dsn, reactor=reactor, pool_size=args.pool_size)
            await store.start()
            try:
                results = await bench_store(store, reactor, args.jobs, args.users, "postgres")
            finally:
                await store.stop()
            baselines = await baseline_postgres(dsn, args.jobs, args.pool_size)
            report(f"PostgreSQL (txpostgres pool of {args.pool_size})", results, baselines)
            summary.append(("postgres", results, baselines))
        finally:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    print("\nsummary at 64 concurrent submitters (targets: >= 1000/s SQLite, >= 1500/s PostgreSQL,"
          " >= 0.5 x baseline):")
    for engine, results, baselines in summary:
        base = next(r.rate for r in baselines if r.concurrency == 64)
        for r in results:
            if r.concurrency == 64:
                print(f"  {r.label:<34} {r.rate:7.0f}/s  baseline {base:6.0f}/s  ratio {r.rate / base:4.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per run at 16 and 64 submitters")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--pool-size", type=int, default=16)
    parser.add_argument("--pg", default=os.environ.get(
        "PCNET_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))
