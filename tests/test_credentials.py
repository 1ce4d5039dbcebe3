"""CredentialsManager and the start-up check against real files in temporary directories."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from protocol import CredsUpdate, ErrorEvent
from worker.credentials import DAY_MS, METADATA_FILE, NEONIZE_STORE, CredentialsManager
from worker.errors import FatalBotError
from worker.recovery import check_at_start, restore_backup
from worker.storefiles import check_json, check_sqlite

SCHEMA = (Path(__file__).parent / "data" / "whatsmeow-schema.sql").read_text()
REPO = Path(__file__).resolve().parent.parent
NEONIZE = SimpleNamespace(id="nz", backend="neonize", phone_number=None)
SIM = SimpleNamespace(id="sim", backend="simulated", phone_number="15550001111")


def make_store(path: Path, paired: bool = True, jid: str = "15551234567.0:12@s.whatsapp.net") -> Path:
    """A whatsmeow session store with neonize 0.5.2's schema (and a device row when paired)."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    if paired:
        db.execute("INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, signed_pre_key, "
                   "signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig, "
                   "adv_account_sig_key, adv_device_sig) VALUES (?, 1, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                   (jid, b"n" * 32, b"i" * 32, b"s" * 32, b"g" * 64, b"a", b"d", b"x" * 64, b"k" * 32, b"v" * 64))
    db.commit()
    db.close()
    return path


@pytest.fixture
def manager(tmp_path: Path) -> CredentialsManager:
    return CredentialsManager(tmp_path / "auth", "srv", backup_keep=3)


def test_json_session_round_trip_with_metadata_and_private_modes(manager: CredentialsManager) -> None:
    old = os.umask(0)
    try:
        assert not manager.has_credentials(SIM) and manager.load_credentials(SIM) is None
        path = manager.save_credentials(SIM, {"me": "x@s.whatsapp.net", "keys": [1, 2]})
    finally:
        os.umask(old)
    assert path == manager.auth_root / "srv" / "bot_sim" / "creds.json"
    assert manager.load_credentials(SIM) == {"me": "x@s.whatsapp.net", "keys": [1, 2]}
    assert manager.has_credentials("sim")  # by id: the store on disk says which backend
    for made in (path.parent, path.parent.parent, manager.auth_root):
        assert made.stat().st_mode & 0o777 == 0o700, f"{made} under umask 0"
    for file in path.parent.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, f"{file} under umask 0"
    meta = manager.get_credential_metadata(SIM)
    assert meta.bot_id == "sim" and meta.phone_number == "15550001111" and meta.verified
    assert meta.expires_at == meta.last_updated + 90 * DAY_MS
    on_disk = json.loads((path.parent / METADATA_FILE).read_text())
    assert set(on_disk) == {"botId", "phoneNumber", "lastUpdated", "expiresAt", "verified", "version"}
    assert 0 <= manager.get_credential_age(SIM) < 5000
    assert not manager.is_credential_expired(SIM)


def test_neonize_store_is_sqlite_and_its_device_row_is_the_credentials(manager: CredentialsManager, tmp_path) -> None:
    unpaired = make_store(tmp_path / "fresh.sqlite3", paired=False)
    manager.save_credentials(NEONIZE, unpaired)
    assert (manager.bot_dir(NEONIZE) / NEONIZE_STORE).exists()
    assert not manager.has_credentials(NEONIZE), "a store with no device is not paired"
    manager.save_credentials(NEONIZE, make_store(tmp_path / "paired.sqlite3"))
    assert manager.load_credentials("nz")["jid"] == "15551234567.0:12@s.whatsapp.net"
    assert manager.has_credentials("nz") and manager.get_credential_metadata("nz").verified


def test_expiry_is_configurable_and_age_is_in_milliseconds(tmp_path: Path) -> None:
    manager = CredentialsManager(tmp_path, "srv", expiry_days=1)
    manager.save_credentials(SIM, {"a": 1})
    meta_path = manager.metadata_path(SIM)
    raw = json.loads(meta_path.read_text())
    raw["lastUpdated"] -= 2 * DAY_MS
    raw["expiresAt"] = None
    meta_path.write_text(json.dumps(raw))
    assert manager.is_credential_expired(SIM), "the cache must see the file changed on disk"
    assert 2 * DAY_MS <= manager.get_credential_age(SIM) < 2 * DAY_MS + 5000
    assert not CredentialsManager(tmp_path, "srv", expiry_days=3).is_credential_expired(SIM)


def test_backups_keep_the_newest_n_and_clear_backs_up_first(manager: CredentialsManager) -> None:
    for i in range(5):
        manager.save_credentials(SIM, {"n": i})
        manager.backup_credentials(SIM)
    backups = manager.list_backups(SIM)
    assert len(backups) == 3, "backup_keep=3"
    assert [json.loads(b.store.read_text())["n"] for b in backups] == [4, 3, 2], "newest first"
    assert all(b.store.name.startswith("creds.backup.") and b.metadata for b in backups)
    manager.save_credentials(SIM, {"n": "last"})
    backup = manager.clear_all_credentials(SIM)
    assert json.loads(backup.store.read_text()) == {"n": "last"}
    assert not manager.has_credentials(SIM) and manager.get_credential_metadata(SIM) is None


def test_bot_dirs_and_stats_skip_symlinks_and_bad_names(manager: CredentialsManager, tmp_path) -> None:
    manager.save_credentials(SIM, {"a": 1})
    manager.save_credentials(NEONIZE, make_store(tmp_path / "s.sqlite3"))
    manager.backup_credentials(NEONIZE)
    (manager.auth_root / "srv" / "bot_empty").mkdir()
    (manager.auth_root / "srv" / "bot_bad name").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (manager.auth_root / "srv" / "bot_link").symlink_to(outside)
    assert [p.name for p in manager.get_all_bot_dirs()] == ["bot_empty", "bot_nz", "bot_sim"]
    stats = manager.get_credential_stats("srv")
    assert (stats["bots"], stats["paired"], stats["verified"], stats["expired"], stats["backups"]) == (3, 2, 2, 0, 1)
    assert stats["total_bytes"] > 100_000 and stats["newest_backup"]


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x" * 65, ".."])
def test_bot_ids_cannot_escape_the_auth_root(manager: CredentialsManager, bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid bot id"):
        manager.save_credentials(bad, {"a": 1})
    assert not (manager.auth_root.parent / "escape").exists()


def test_a_symlinked_bot_dir_is_refused(manager: CredentialsManager, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (manager.auth_root / "srv").mkdir(parents=True)
    (manager.auth_root / "srv" / "bot_sim").symlink_to(outside)
    with pytest.raises(FatalBotError, match="symlink"):
        manager.save_credentials(SIM, {"a": 1})
    assert list(outside.iterdir()) == []


def test_clear_cache_and_the_cache_never_serves_a_changed_file(manager: CredentialsManager) -> None:
    manager.save_credentials(SIM, {"v": 1})
    assert manager.load_credentials(SIM) == {"v": 1}
    path = manager.store_path(SIM)
    path.write_text(json.dumps({"v": 2, "pad": "longer than before"}))
    assert manager.load_credentials(SIM)["v"] == 2
    manager.clear_cache("sim")
    manager.clear_cache()
    assert manager.load_credentials(SIM)["v"] == 2


WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
print("ready", flush=True)
i = 0
while True:
    with db:
        db.execute("INSERT INTO whatsmeow_contacts (our_jid, their_jid, push_name) VALUES (?, ?, ?)",
                   ("me", f"c{i}", "x" * 2000))
        db.execute("UPDATE whatsmeow_device SET push_name = ?", (str(i),))
    i += 1
"""


def test_sqlite_backup_taken_under_concurrent_writes_is_consistent(manager: CredentialsManager, tmp_path) -> None:
    manager.save_credentials(NEONIZE, make_store(tmp_path / "s.sqlite3"))
    store = manager.store_path(NEONIZE)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        seen = []
        for _ in range(8):
            backup = manager.backup_credentials(NEONIZE)
            assert check_sqlite(backup.store) is None, f"{backup.store} failed integrity_check"
            db = sqlite3.connect(backup.store)
            contacts = db.execute("SELECT count(*) FROM whatsmeow_contacts").fetchone()[0]
            push = db.execute("SELECT push_name FROM whatsmeow_device").fetchone()[0]
            db.close()
            # one snapshot: the device row was updated in the same transaction as the last insert
            assert contacts == 0 and push == "" or int(push) == contacts - 1
            seen.append(contacts)
        assert writer.poll() is None, "the writer must have run during every backup"
        assert seen[-1] > seen[0], f"the store grew between backups: {seen}"
    finally:
        writer.kill()
        writer.wait(10)


KILLED_WRITER = """
import sys
from types import SimpleNamespace
from worker.credentials import CredentialsManager
m = CredentialsManager(sys.argv[1], "srv", backup_keep=3)
sim = SimpleNamespace(id="sim", backend="simulated", phone_number=None)
nz = SimpleNamespace(id="nz", backend="neonize", phone_number=None)
print("ready", flush=True)
i = 0
while True:
    i += 1
    m.save_credentials(sim, {"i": i, "pad": "y" * (i % 5000)})
    m.update_metadata(nz, verified=True, phone_number=str(10**6 + i))
    m.backup_credentials(nz)
    m.backup_credentials(sim)
"""


def test_a_writer_sigkilled_at_random_points_never_leaves_a_torn_file(manager: CredentialsManager, tmp_path) -> None:
    manager.save_credentials(NEONIZE, make_store(tmp_path / "s.sqlite3"))
    rng = random.Random(5)
    for round_ in range(25):
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(manager.auth_root)], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))  # the kill point is what varies, not a synchronisation
            writer.send_signal(signal.SIGKILL)
        finally:
            writer.kill()
            writer.wait(10)
        for bot_dir in manager.get_all_bot_dirs():
            for path in bot_dir.iterdir():
                if path.name.startswith("."):
                    continue  # a dead writer's temporary file: never the real one
                why = check_sqlite(path) if path.name.endswith(".sqlite3") else check_json(path)
                assert why is None, f"round {round_}: {path} is torn: {why}"
    assert manager.list_backups(NEONIZE) and manager.load_credentials(SIM)["i"] > 0


def test_corrupt_store_is_set_aside_and_the_newest_good_backup_restored(manager: CredentialsManager, tmp_path):
    manager.save_credentials(NEONIZE, make_store(tmp_path / "s.sqlite3"))
    good = manager.backup_credentials(NEONIZE)
    store = manager.store_path(NEONIZE)
    store.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))  # garbage after a valid header
    events: list = []
    check_at_start(manager, NEONIZE, events.append)
    assert isinstance(events[0], ErrorEvent) and events[0].file == str(store) and not events[0].fatal
    assert isinstance(events[1], CredsUpdate) and events[1].reason == "restored"
    assert check_sqlite(store) is None and manager.has_credentials(NEONIZE)
    aside = list(store.parent.glob(f"{NEONIZE_STORE}.corrupt.*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"SQLite format 3"), "kept, not deleted"
    assert good.stamp in {b.stamp for b in manager.list_backups(NEONIZE)}


def test_corrupt_json_or_metadata_without_a_backup_is_fatal(manager: CredentialsManager) -> None:
    manager.save_credentials(SIM, {"a": 1})
    manager.store_path(SIM).write_text('{"a": ')  # truncated
    with pytest.raises(FatalBotError) as info:
        check_at_start(manager, SIM, lambda e: None)
    assert info.value.code == "corrupt-store" and info.value.file == str(manager.store_path(SIM))
    assert info.value.exit_code == 78
    manager.store_path(SIM).write_text('{"a": 1}')
    manager.metadata_path(SIM).write_text("[]")
    with pytest.raises(FatalBotError, match=METADATA_FILE):
        check_at_start(manager, SIM, lambda e: None)


def test_corrupt_metadata_alone_comes_back_from_a_backup(manager: CredentialsManager) -> None:
    manager.save_credentials(SIM, {"a": 1})
    manager.backup_credentials(SIM)
    manager.metadata_path(SIM).write_bytes(b"\x00\x01")
    events: list = []
    check_at_start(manager, SIM, events.append)
    assert events[0].file == str(manager.metadata_path(SIM))
    assert manager.get_credential_metadata(SIM).bot_id == "sim"
    assert manager.load_credentials(SIM) == {"a": 1}, "a sound store is left alone"


def test_expired_credentials_are_noted_at_start(tmp_path: Path) -> None:
    manager = CredentialsManager(tmp_path, "srv", expiry_days=1)
    manager.save_credentials(SIM, {"a": 1})
    raw = json.loads(manager.metadata_path(SIM).read_text())
    manager.metadata_path(SIM).write_text(json.dumps({**raw, "lastUpdated": raw["lastUpdated"] - 2 * DAY_MS}))
    events: list = []
    check_at_start(manager, SIM, events.append)
    assert [e.reason for e in events if isinstance(e, CredsUpdate)] == ["expired"]
    assert not manager.get_credential_metadata(SIM).verified


def test_restore_a_named_backup_keeps_the_current_session_as_a_backup(manager: CredentialsManager) -> None:
    manager.save_credentials(SIM, {"v": "old"})
    old = manager.backup_credentials(SIM)
    manager.save_credentials(SIM, {"v": "new"})
    restore_backup(manager, SIM, old.stamp)
    assert manager.load_credentials(SIM) == {"v": "old"}
    assert any(json.loads(b.store.read_text()) == {"v": "new"} for b in manager.list_backups(SIM))


def test_a_dead_writers_old_temporary_file_is_removed_at_start(manager: CredentialsManager) -> None:
    manager.save_credentials(SIM, {"a": 1})
    old = manager.bot_dir(SIM) / ".creds.json.x1y2.tmp"
    fresh = manager.bot_dir(SIM) / ".creds.json.z3w4.tmp"
    old.write_text('{"a": ')
    fresh.write_text('{"a": ')
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    check_at_start(manager, SIM, lambda e: None)
    assert not old.exists(), "an hour-old temporary file is a dead writer's"
    assert fresh.exists(), "a fresh one may belong to a running `creds backup`"
