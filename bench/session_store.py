"""``python -m bench.session_store``: neonize's session in PostgreSQL (whatsmeow's sqlstore) or in
files moved on handover? The measurements behind the decision in docs/cluster.md.

All offline, against a real PostgreSQL this script starts (durable: fsync on, as production):
1. store open: neonize's own ``connect()`` up to the network (whatsmeow opens its container and
   runs its schema upgrade, then the dial fails offline), SQLite file vs PostgreSQL DSN, fresh
   and already-created; and the PostgreSQL connections one worker holds meanwhile.
2. writes: whatsmeow's per-message store write (an upsert of a Signal session row, whatsmeow's
   own table and SQL shape), one per transaction as whatsmeow does, SQLite vs PostgreSQL.
3. handover: what moving files costs instead, for a store filled to a given size: pack (backup +
   tar.gz), store in PostgreSQL, fetch, check and restore (supervisor/cluster/handover.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: the SQLite parameters the neonize backend opens its store with (worker/backends/neonize.py)
SQLITE_PARAMS = "?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&"

PROBE = r"""
import json, sys, time
from neonize.client import NewClient
name = sys.argv[1]
client = NewClient(name, uuid="probe")
began = time.perf_counter()
try:
    client.connect()
except Exception as exc:
    err = f"{exc.__class__.__name__}: {str(exc)[:120]}"
else:
    err = None
print(json.dumps({"seconds": time.perf_counter() - began, "error": err}), flush=True)
import os; os._exit(0)
"""


def probe(name: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=120, cwd=REPO)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not line:
        raise RuntimeError(f"probe failed: {out.stderr[-1500:]}")
    return json.loads(line[-1])


def watch_connections(dsn: str, stop: threading.Event, seen: list[int]) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name <> 'watch' "
                             "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()[0]
            seen.append(n)
            time.sleep(0.002)


def store_open(pg, runs: int) -> dict:
    results: dict[str, list[float]] = {"sqlite fresh": [], "sqlite existing": [], "postgres fresh": [],
                                       "postgres existing": []}
    errors = set()
    peak = 0
    for i in range(runs):
        d = Path(tempfile.mkdtemp(prefix="bv-store-"))
        name = str(d / "session.sqlite3") + SQLITE_PARAMS
        for kind in ("fresh", "existing"):
            r = probe(name)
            results[f"sqlite {kind}"].append(r["seconds"])
            errors.add(r["error"])
        dsn = pg.create_database(f"store{i}")
        seen: list[int] = []
        stop = threading.Event()
        watcher = threading.Thread(target=watch_connections, args=(pg.dsn("postgres"), stop, seen), daemon=True)
        watcher.start()
        for kind in ("fresh", "existing"):
            r = probe(dsn + "?sslmode=disable")
            results[f"postgres {kind}"].append(r["seconds"])
            errors.add(r["error"])
        stop.set()
        watcher.join()
        peak = max(peak, max(seen, default=0))
    tables = []
    import psycopg

    with psycopg.connect(pg.dsn("store0"), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'whatsmeow%' "
                                             "ORDER BY 1")]
    return {"ms": {k: round(statistics.median(v) * 1000, 1) for k, v in results.items()},
            "errors": sorted(e for e in errors if e), "whatsmeow_tables_in_postgres": len(tables),
            "peak_pg_connections_one_worker": peak}


SESSION_SQL_SQLITE = ("INSERT INTO whatsmeow_sessions (our_jid, their_id, session) VALUES (?, ?, ?) "
                      "ON CONFLICT (our_jid, their_id) DO UPDATE SET session=excluded.session")
SESSION_SQL_PG = SESSION_SQL_SQLITE.replace("?", "%s")
DEVICE_SQL = ("INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, signed_pre_key, "
              "signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig, adv_account_sig_key, "
              "adv_device_sig) VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)")
ME = "me@s.whatsapp.net"


def device_row() -> tuple:
    k32, k64 = os.urandom(32), os.urandom(64)
    return (ME, k32, k32, k32, k64, k32, b"adv", k64, k32, k64)


def writes(pg, count: int) -> dict:
    """One Signal session upsert per transaction, whatsmeow's per-message write, on whatsmeow's tables."""
    import psycopg

    d = Path(tempfile.mkdtemp(prefix="bv-writes-"))
    path = d / "session.sqlite3"
    probe(str(path) + SQLITE_PARAMS)  # whatsmeow creates its schema
    blob = os.urandom(1200)  # a Signal session record is about a kilobyte
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")  # as the neonize backend opens it: WAL, foreign keys on
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(DEVICE_SQL, device_row())
    t = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN")
        db.execute(SESSION_SQL_SQLITE, ("me@s.whatsapp.net", f"{i % 200}.0", blob))
        db.execute("COMMIT")
    sqlite_us = (time.perf_counter() - t) / count * 1e6
    db.close()
    dsn = pg.create_database("writes")
    probe(dsn + "?sslmode=disable")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DEVICE_SQL.replace("?", "%s"), device_row())
        t = time.perf_counter()
        for i in range(count):
            conn.execute(SESSION_SQL_PG, ("me@s.whatsapp.net", f"{i % 200}.0", blob))
        pg_us = (time.perf_counter() - t) / count * 1e6
    return {"writes": count, "sqlite_us": round(sqlite_us), "postgres_us": round(pg_us),
            "ratio": round(pg_us / sqlite_us, 2)}


def handover_cost(pg, sessions: int) -> dict:
    import psycopg

    from supervisor.cluster import handover
    from supervisor.cluster.lease import LeaseStore

    root = Path(tempfile.mkdtemp(prefix="bv-move-"))
    bot_dir = root / "a" / "srv" / "bot_x"
    bot_dir.mkdir(parents=True, mode=0o700)
    store = bot_dir / "session.sqlite3"
    probe(str(store) + SQLITE_PARAMS)
    db = sqlite3.connect(store)
    db.execute(DEVICE_SQL, device_row())
    db.executemany(SESSION_SQL_SQLITE, [("me@s.whatsapp.net", f"{i}.0", os.urandom(1200)) for i in range(sessions)])
    db.executemany("INSERT INTO whatsmeow_contacts (our_jid, their_jid, first_name, full_name, push_name) "
                   "VALUES (?, ?, ?, ?, ?)", [("me@s.whatsapp.net", f"{i}@s.whatsapp.net", "A", f"Contact {i}",
                                               f"push {i}") for i in range(sessions * 5)])
    db.commit()
    db.close()
    size = store.stat().st_size
    dsn = pg.create_database("move")
    old = LeaseStore(psycopg.connect(dsn, autocommit=True), "srv", "0/a", 0, 60)
    new = LeaseStore(psycopg.connect(dsn, autocommit=True), "srv", "1/b", 1, 60)
    old.ensure_schema()
    old.acquire(["x"])
    t0 = time.perf_counter()
    packed = handover.pack(bot_dir, "x")
    t1 = time.perf_counter()
    old.release("x", 1, (packed.sha256, packed.data))
    t2 = time.perf_counter()
    token = new.acquire(["x"])["x"]
    snap = new.snapshot("x")
    t3 = time.perf_counter()
    handover.restore(root / "b" / "srv" / "bot_x", snap.sha256, snap.data, token)
    t4 = time.perf_counter()
    return {"store_kib": size // 1024, "packed_kib": len(packed.data) // 1024, "pack_ms": round((t1 - t0) * 1000, 1),
            "store_in_pg_ms": round((t2 - t1) * 1000, 1), "fetch_ms": round((t3 - t2) * 1000, 1),
            "check_and_restore_ms": round((t4 - t3) * 1000, 1), "total_ms": round((t4 - t0) * 1000, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.session_store", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="store opens per kind (default 3)")
    p.add_argument("--writes", type=int, default=500, help="session writes per store (default 500)")
    p.add_argument("--sessions", type=int, default=2000, help="Signal sessions in the moved store (default 2000)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.pgserver import PostgresServer

    pg = PostgresServer(durable=True).start()
    try:
        report = {"store_open": store_open(pg, args.runs), "writes": writes(pg, args.writes),
                  "handover": handover_cost(pg, args.sessions)}
    finally:
        pg.stop()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
