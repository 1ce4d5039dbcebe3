"""Placement: rendezvous hashing, pins, the shard index, `check-config --shards`, [cluster] validation."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.cluster_config import ClusterSettings, ShardUnknown, resolve_shard
from protocol.config import BotConfig, ConfigError, load_config
from supervisor.cluster.sharding import assignment, local_config, moves, shard_of

from .harness import REPO

BOTS = [BotConfig(id=f"bot{i:04d}") for i in range(3000)]


def test_changing_n_moves_about_one_in_n_and_only_to_the_new_shard() -> None:
    for old, new in ((3, 4), (4, 5), (9, 10)):
        moved = moves(BOTS, old, new)
        share = len(moved) / len(BOTS)
        assert abs(share - 1 / new) < 0.03, f"{old} -> {new} moved {share:.1%}, expected about {1 / new:.1%}"
        assert {m.target for m in moved} == {new - 1}
    shrink = moves(BOTS, 4, 3)  # removing the last shard moves only its bots, spread over the rest
    before = assignment(BOTS, 4)
    assert {m.bot for m in shrink} == {b for b, k in before.items() if k == 3}
    assert {m.target for m in shrink} == {0, 1, 2}


def test_the_assignment_is_balanced_and_the_same_in_every_process() -> None:
    counts = [list(assignment(BOTS, 4).values()).count(k) for k in range(4)]
    assert min(counts) > 0.9 * len(BOTS) / 4 and max(counts) < 1.1 * len(BOTS) / 4
    code = "from supervisor.cluster.sharding import shard_of; print([shard_of(f'bot{i:04d}', 4) for i in range(50)])"
    other = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str([shard_of(b.id, 4) for b in BOTS[:50]])  # no per-process hash salt


def test_a_pin_wins_and_never_moves() -> None:
    pinned = dataclasses.replace(BOTS[0], shard=1)
    assert shard_of(pinned, 3) == 1 and shard_of(pinned, 7) == 1
    assert pinned.id not in {m.bot for m in moves([pinned, *BOTS[1:100]], 3, 4)}


@pytest.mark.parametrize(("host", "env", "want"), [
    ("botvisor-2", None, 2), ("botvisor-0.botvisor.ns.svc.cluster.local", None, 0), ("anything", "1", 1),
])
def test_the_shard_comes_from_the_pod_ordinal_or_the_environment(monkeypatch, host, env, want) -> None:
    monkeypatch.delenv("BOTVISOR_SHARD", raising=False)
    if env is not None:
        monkeypatch.setenv("BOTVISOR_SHARD", env)
    assert resolve_shard(ClusterSettings(shards=3), hostname=host) == want


def test_a_host_with_no_ordinal_or_one_out_of_range_is_refused(monkeypatch) -> None:
    monkeypatch.delenv("BOTVISOR_SHARD", raising=False)
    with pytest.raises(ShardUnknown, match="ordinal"):
        resolve_shard(ClusterSettings(shards=3), hostname="laptop")
    with pytest.raises(ShardUnknown, match="not below shards = 3"):
        resolve_shard(ClusterSettings(shards=3), hostname="botvisor-3")
    monkeypatch.setenv("BOTVISOR_SHARD", "x")
    with pytest.raises(ShardUnknown, match="BOTVISOR_SHARD"):
        resolve_shard(ClusterSettings(shards=3), hostname="botvisor-1")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "botvisor.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "key", "reason"), [
    ('[[bots]]\nid = "a"\nshard = 1\n', "bots[0] (a).shard", "needs a [cluster] table"),
    ('[cluster]\nshards = 2\n[[bots]]\nid = "a"\nshard = 2\n', "bots[0] (a).shard", "not below shards = 2"),
    ('[cluster]\nshards = 2\nshard = 5\n', "cluster.shard", "not below shards = 2"),
    ('[cluster]\nshard = "first"\n', "cluster.shard", '"auto" or a shard index'),
    ('[cluster]\nlease_ttl = 5\nrenew_interval = 4\nstop_margin = 2\n', "cluster.renew_interval", "too late"),
    ('[cluster]\nleases = 3\n', "cluster", "leases"),
    ('[cluster]\npeer_control = "tcp://h-{pod}:1"\n', "cluster.peer_control", "{shard}"),
])
def test_bad_cluster_settings_are_refused_naming_the_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert key in caught.value.key and reason in str(caught.value), str(caught.value)


def test_a_shard_sees_only_its_bots(tmp_path: Path) -> None:
    bots = "".join(f'[[bots]]\nid = "b{i}"\n' for i in range(30))
    config = load_config(write(tmp_path, f'[cluster]\nshards = 3\ndatabase = "postgresql:///x"\n{bots}'))
    views = [local_config(config, k) for k in range(3)]
    ids = [{b.id for b in v.bots} for v in views]
    assert set().union(*ids) == {f"b{i}" for i in range(30)} and sum(map(len, ids)) == 30
    assert config.cluster is not None and config.cluster.peers("control") == []


def test_check_config_shards_prints_the_assignment_and_what_a_change_moves(tmp_path: Path) -> None:
    bots = "".join(f'[[bots]]\nid = "b{i:02d}"\n' for i in range(40)) + '[[bots]]\nid = "pinned"\nshard = 0\n'
    path = write(tmp_path, f'[cluster]\nshards = 3\n{bots}')
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "check-config", "-c", str(path), "--shards", "4"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    config = load_config(path)
    table = assignment(config.bots, 3)
    for k in range(3):
        assert f"shard {k}: {list(table.values()).count(k)} bot(s)" in out.stdout
    assert re.search(r"pinned\s+shard 0 \(pinned\)", out.stdout)
    moved = moves(config.bots, 3, 4)
    assert f"N 3 -> 4: {len(moved)} of 41 bot(s) move" in out.stdout
    for m in moved:
        assert re.search(rf"{m.bot}\s+shard {m.source} -> 3", out.stdout)
    plain = write(tmp_path, '[[bots]]\nid = "a"\n')
    out = subprocess.run([sys.executable, "-m", "supervisor.cli", "check-config", "-c", str(plain), "--shards"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "no [cluster] table" in out.stderr


def test_every_cluster_key_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    missing = {f.name for f in dataclasses.fields(ClusterSettings)} - documented
    assert not missing, f"[cluster]: undocumented keys {sorted(missing)}"


def test_without_a_cluster_table_nothing_changes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[[bots]]\nid = "a"\n'))
    assert config.cluster is None and config.bots[0].shard is None


def test_a_running_shard_refuses_a_reload_that_needs_a_restart_or_drops_its_index(tmp_path: Path, monkeypatch) -> None:
    from supervisor.cluster.member import ClusterMember

    monkeypatch.setenv("BOTVISOR_SHARD", "3")
    base = '[cluster]\ndatabase = "postgresql:///x"\n'
    member = ClusterMember(type("S", (), {"server": "s"})(), load_config(write(tmp_path, base + "shards = 4\n")))
    assert member.shard == 3
    with pytest.raises(ConfigError, match="scale the shards down after lowering shards"):
        member.local(load_config(write(tmp_path, base + "shards = 3\n")))
    with pytest.raises(ConfigError, match="lease_ttl can only change with a restart"):
        member.local(load_config(write(tmp_path, base + "shards = 4\nlease_ttl = 30\n")))
    grown = member.local(load_config(write(tmp_path, base + "shards = 5\n")))  # growing is live
    assert grown.cluster is not None and grown.cluster.shards == 5
    assert member.settings.shards == 4  # until the reload is applied (after_reload)
    monkeypatch.delenv("BOTVISOR_SHARD")
    monkeypatch.delenv("BOTVISOR_DATABASE", raising=False)
    with pytest.raises(ConfigError, match="DSN"):
        ClusterMember(type("S", (), {"server": "s"})(), load_config(write(tmp_path, "[cluster]\nshard = 0\n")))
