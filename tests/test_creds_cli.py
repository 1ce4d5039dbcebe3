"""`botvisor creds`: stats, backup, list, restore (refused under a running worker) and migrate."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

from protocol import CredsUpdate, Event, Hello
from worker.credentials import NEONIZE_STORE, CredentialsManager

from .harness import REPO
from .test_credentials import make_store

SIM = SimpleNamespace(id="b1", backend="simulated", phone_number=None)


def creds(fleet, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", "creds", "-c", str(fleet.config_path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_stats_backup_list_and_restore_offline(fleet_factory) -> None:
    fleet = fleet_factory(["b1", "b2"])
    manager = CredentialsManager(fleet.auth_dir, fleet.server)
    manager.save_credentials(SIM, {"v": "first"})
    manager.save_credentials("b2", {"v": "b2"})
    out = creds(fleet, "backup", "--all")
    assert out.returncode == 0 and "b1: backup " in out.stdout and "b2: backup " in out.stdout, out.stderr
    first = manager.list_backups(SIM)[0]
    manager.save_credentials(SIM, {"v": "second"})
    listing = creds(fleet, "list", "b1")
    assert first.stamp in listing.stdout and "creds.backup." in listing.stdout
    stats = json.loads(creds(fleet, "stats", "--json").stdout)
    assert stats[0]["server"] == fleet.server and stats[0]["bots"] == 2 and stats[0]["paired"] == 2
    assert stats[0]["backups"] == 2
    assert creds(fleet, "stats").stdout.splitlines()[1].split()[:3] == [fleet.server, "2", "2"]
    restored = creds(fleet, "restore", "b1", first.stamp)
    assert restored.returncode == 0, restored.stderr
    assert manager.load_credentials(SIM) == {"v": "first"}
    bad = creds(fleet, "restore", "b1", "20000101T000000.000000Z")
    assert bad.returncode == 1 and "no backup" in bad.stderr


def test_restore_is_refused_while_the_worker_runs_unless_stop(fleet_factory, launch) -> None:
    fleet = fleet_factory([{"id": "b1", "simulated": {"paired": True}}])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, Event) and isinstance(m.data, CredsUpdate) and m.data.reason == "connected",
                 what="b1 connected")
    hello = [m for m in tap.seen if isinstance(m, Hello)][0]
    assert creds(fleet, "backup", "b1").returncode == 0
    refused = creds(fleet, "restore", "b1")
    assert refused.returncode == 1 and "is running" in refused.stderr and "--stop" in refused.stderr
    done = creds(fleet, "restore", "b1", "--stop")
    assert done.returncode == 0, done.stderr
    assert "restored backup" in done.stdout
    status = service.control("status", {"bots": ["b1"]})["bots"][0]
    assert status["container_state"] == "stopped" and status["pid"] in (None, 0, hello.pid)


def test_migrate_is_a_dry_run_first_never_overwrites_and_reports_each_file(fleet_factory, tmp_path) -> None:
    fleet = fleet_factory(["b1"])
    old = tmp_path / "old"
    old.mkdir()
    make_store(old / "alice.sqlite3", jid="15550002222.0:3@s.whatsapp.net")
    make_store(old / "bob.db", paired=False)
    (old / "broken.sqlite3").write_bytes(b"not a database at all" * 100)
    (old / "bad id.db").write_bytes(b"")
    (old / "notes.txt").write_text("hi")
    (old / "bot_carol").mkdir()
    (old / "bot_carol" / "creds.json").write_text('{"me": "c"}')
    (old / "bot_carol" / "extra-key.json").write_text("{}")
    manager = CredentialsManager(fleet.auth_dir, fleet.server)
    manager.save_credentials(SimpleNamespace(id="dave", backend="neonize", phone_number=None),
                             make_store(tmp_path / "dave.sqlite3", jid="1@s.whatsapp.net"))
    make_store(old / "dave.sqlite3", jid="2@s.whatsapp.net")
    dry = creds(fleet, "migrate", "--from", str(old))
    assert dry.returncode == 0, dry.stderr
    lines = {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1] for line in dry.stdout.splitlines()
             if ": " in line}
    assert lines["alice.sqlite3"].startswith("would import") and lines["bot_carol"].startswith("would copy 2")
    assert "not a sound SQLite" in lines["broken.sqlite3"] and "not a valid bot id" in lines["bad id.db"]
    assert lines["notes.txt"].startswith("ignored") and "already exists" in lines["dave.sqlite3"]
    assert not manager.bot_dir("alice").exists(), "a dry run changes nothing"
    applied = creds(fleet, "migrate", "--from", str(old), "--apply")
    assert applied.returncode == 0 and "imported 3 of 7" in applied.stdout, applied.stdout
    assert manager.load_credentials("alice")["jid"].startswith("15550002222")
    assert manager.get_credential_metadata("alice").phone_number == "15550002222"
    assert not manager.has_credentials("bob") and (manager.bot_dir("bob") / NEONIZE_STORE).exists()
    assert manager.load_credentials("carol") == {"me": "c"}
    db = sqlite3.connect(manager.store_path("dave"))
    assert db.execute("SELECT jid FROM whatsmeow_device").fetchone()[0] == "1@s.whatsapp.net", "not overwritten"
    db.close()
    assert (manager.bot_dir("alice") / NEONIZE_STORE).stat().st_mode & 0o777 == 0o600
