"""The matrix of refused configurations, and the docs table generated from it.

Each case is a configuration file (``$DIR`` stands for the file's own directory, in which a
regular file ``afile`` exists) and a fragment its error must contain. tests/test_bad_configs.py
loads every case and checks that docs/refused-configurations.md is exactly what ``render``
makes of the real messages, so the table cannot drift:

    python -m tests.bad_configs > docs/refused-configurations.md
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

BOT = '\n[[bots]]\nid = "a"\n'
LONG = "x" * 120


@dataclass(frozen=True)
class Case:
    group: str
    what: str
    toml: str
    expect: str


CASES = [
    # syntax
    Case("syntax", "not TOML", "[supervisor\n", "not valid TOML"),
    Case("syntax", "a key given twice", '[supervisor]\nstop_timeout = 1\nstop_timeout = 2\n' + BOT, "not valid TOML"),
    Case("syntax", "a string left open", '[supervisor]\nserver_name = "x\n', "not valid TOML"),
    Case("syntax", "not UTF-8", "\xff", "cannot read it"),
    # unknown keys
    Case("unknown keys", "a misspelt table", "[supervisr]\n" + BOT, "supervisr"),
    Case("unknown keys", "a misspelt [supervisor] key", "[supervisor]\nheartbeat_intervall = 3\n" + BOT,
         "heartbeat_intervall"),
    Case("unknown keys", "a misspelt bot key", '[[bots]]\nid = "a"\nbakend = "simulated"\n', "bakend"),
    Case("unknown keys", "a misspelt backoff key", "[supervisor.backoff]\nmaxx = 3\n" + BOT, "maxx"),
    Case("unknown keys", "a misspelt simulated knob", '[[bots]]\nid = "a"\n[bots.simulated]\ncrash_afterr = 1\n',
         "crash_afterr"),
    # types
    Case("types", "a number as a string", '[supervisor]\nheartbeat_interval = "30"\n' + BOT, "must be a number"),
    Case("types", "a boolean as a string", '[[bots]]\nid = "a"\nautostart = "yes"\n', "autostart"),
    Case("types", "a fraction for an integer", "[supervisor]\nmax_reconnect_attempts = 1.5\n" + BOT,
         "must be an integer"),
    Case("types", "bots not an array of tables", "bots = 1\n", "bots"),
    Case("types", "a bot that is not a table", "bots = [1]\n", "must be a table"),
    Case("types", "backoff not a table", '[[bots]]\nid = "a"\nbackoff = 3\n', "must be a table"),
    # ids
    Case("ids", "a bot without an id", '[[bots]]\nbackend = "simulated"\n', "missing required key"),
    Case("ids", "an id that climbs out", '[[bots]]\nid = "../x"\n', "not a valid bot id"),
    Case("ids", "an empty id", '[[bots]]\nid = ""\n', "not a valid bot id"),
    Case("ids", "an id of 65 characters", f'[[bots]]\nid = "{"a" * 65}"\n', "not a valid bot id"),
    Case("ids", "an id with a space", '[[bots]]\nid = "a b"\n', "not a valid bot id"),
    Case("ids", "two bots with one id", BOT + BOT, "duplicate bot id"),
    Case("ids", "a server name with a slash", '[supervisor]\nserver_name = "a/b"\n' + BOT, "not a valid name"),
    # NaN and infinities
    Case("nan and infinities", "heartbeat_interval = nan", "[supervisor]\nheartbeat_interval = nan\n" + BOT,
         "must be a finite number"),
    Case("nan and infinities", "heartbeat_timeout = inf", "[supervisor]\nheartbeat_timeout = inf\n" + BOT,
         "must be a finite number"),
    Case("nan and infinities", "a bot's heartbeat_interval = nan", '[[bots]]\nid = "a"\nheartbeat_interval = nan\n',
         "must be a finite number"),
    Case("nan and infinities", "stop_timeout = -nan", "[supervisor]\nstop_timeout = -nan\n" + BOT,
         "must be a finite number"),
    Case("nan and infinities", "command_timeout = +inf", "[supervisor]\ncommand_timeout = +inf\n" + BOT,
         "must be a finite number"),
    Case("nan and infinities", "backoff.max = -inf", "[supervisor.backoff]\nmax = -inf\n" + BOT,
         "must be a finite number"),
    Case("nan and infinities", "simulated.crash_after = nan", '[[bots]]\nid = "a"\n[bots.simulated]\ncrash_after = nan\n',
         "must be a finite number"),
    Case("nan and infinities", "an integer too large for a float", "[supervisor]\nstart_interval = 1" + "0" * 400 + "\n"
         + BOT, "must be a finite number"),
    # negative and zero
    Case("negative and zero", "heartbeat_interval = 0", "[supervisor]\nheartbeat_interval = 0\n" + BOT, "at least"),
    Case("negative and zero", "heartbeat_interval = -1", "[supervisor]\nheartbeat_interval = -1\n" + BOT, "at least"),
    Case("negative and zero", "stop_timeout = -1", "[supervisor]\nstop_timeout = -1\n" + BOT, "at least"),
    Case("negative and zero", "backoff.factor below 1", "[supervisor.backoff]\nfactor = 0.5\n" + BOT, "at least"),
    Case("negative and zero", "backoff.restart_window = 0", "[supervisor.backoff]\nrestart_window = 0\n" + BOT,
         "greater than"),
    Case("negative and zero", "messages_per_minute = 0", "[supervisor]\nmessages_per_minute = 0\n" + BOT, "at least"),
    Case("negative and zero", "tap_queue = 0", "[supervisor]\ntap_queue = 0\n" + BOT, "at least"),
    Case("negative and zero", "a negative nice", '[[bots]]\nid = "a"\nnice = -5\n', "at least"),
    # timeout below interval
    Case("timeout below interval", "heartbeat_timeout below heartbeat_interval",
         "[supervisor]\nheartbeat_interval = 2\nheartbeat_timeout = 1\n" + BOT, "must exceed heartbeat_interval"),
    Case("timeout below interval", "a bot's heartbeat_timeout equal to its interval",
         '[[bots]]\nid = "a"\nheartbeat_interval = 5\nheartbeat_timeout = 5\n', "must exceed heartbeat_interval"),
    # endpoints
    Case("endpoints", "events = tap", '[endpoints]\nevents = "ipc://$DIR/x.sock"\ntap = "ipc://$DIR/x.sock"\n' + BOT,
         "each role needs an endpoint of its own"),
    Case("endpoints", "control = commands",
         '[endpoints]\ncontrol = "ipc://$DIR/c.sock"\ncommands = "ipc://$DIR/./c.sock"\n' + BOT,
         "each role needs an endpoint of its own"),
    Case("endpoints", "an explicit endpoint equal to a default one",
         '[supervisor]\nrun_dir = "run"\n[endpoints]\ntap = "ipc://$DIR/run/events.sock"\n' + BOT,
         "each role needs an endpoint of its own"),
    Case("endpoints", "two tcp endpoints on one port, one a wildcard",
         '[endpoints]\ncontrol = "tcp://127.0.0.1:7001"\ntap = "tcp://*:7001"\n' + BOT,
         "each role needs an endpoint of its own"),
    Case("endpoints", "an unknown transport", '[endpoints]\ncontrol = "http://127.0.0.1:80"\n' + BOT,
         "not an ipc:// or tcp:// endpoint"),
    Case("endpoints", "workers over tcp", '[endpoints]\nevents = "tcp://127.0.0.1:7002"\n' + BOT, "over ipc:// only"),
    Case("endpoints", "an ipc path too long for a unix socket", f'[endpoints]\ncontrol = "ipc:///tmp/{LONG}.sock"\n' + BOT,
         "characters, over the"),
    Case("endpoints", "an ipc socket under a regular file", '[endpoints]\ncontrol = "ipc://$DIR/afile/c.sock"\n' + BOT,
         "regular file"),
    Case("endpoints", "tcp control without CURVE keys", '[endpoints]\ncontrol = "tcp://127.0.0.1:7003"\n' + BOT,
         "needs CURVE keys"),
    # paths
    Case("paths", "auth_dir under a regular file", '[supervisor]\nauth_dir = "afile/auth"\n' + BOT, "regular file"),
    Case("paths", "run_dir under a regular file", '[supervisor]\nrun_dir = "afile/run"\n' + BOT, "regular file"),
    Case("paths", "log_dir that is a regular file", '[supervisor]\nlog_dir = "afile"\n' + BOT, "regular file"),
    Case("paths", "run_dir under /proc", '[supervisor]\nrun_dir = "/proc/botvisor"\n' + BOT, "virtual filesystem"),
    Case("paths", "auth_dir under /sys", '[supervisor]\nauth_dir = "/sys/botvisor"\n' + BOT, "virtual filesystem"),
    Case("paths", "log_dir under /proc", '[supervisor]\nlog_dir = "/proc/self/logs"\n' + BOT, "virtual filesystem"),
    # missing files
    Case("missing files", "a CURVE key file that does not exist",
         '[endpoints]\ncontrol = "tcp://127.0.0.1:7004"\n[security]\nserver_key = "nokey.key_secret"\n'
         'authorized_keys = "clients"\n' + BOT, "security."),
    Case("missing files", "a configuration file that does not exist", "", "no such file"),
    # unknown values
    Case("unknown values", "an unknown backend", '[[bots]]\nid = "a"\nbackend = "baileys"\n', "baileys"),
    Case("unknown values", "an unknown log level", '[supervisor]\nlog_level = "loud"\n' + BOT, "must be one of"),
    Case("unknown values", "a phone number with letters", '[[bots]]\nid = "a"\nphone_number = "12ab"\n', "digits"),
    Case("unknown values", "a metrics address without a port", '[metrics]\nlisten = "127.0.0.1"\n' + BOT, "HOST:PORT"),
]


def run_case(case: Case, directory: Path) -> str:
    """The message ``load_config`` refuses ``case`` with, file path and directory written as $DIR."""
    from protocol.config import ConfigError, load_config

    (directory / "afile").write_text("a regular file\n")
    path = directory / "botvisor.toml"
    text = case.toml.replace("$DIR", str(directory))
    if case.group == "syntax" and case.what == "not UTF-8":
        path.write_bytes(b"\xff\xfe[supervisor]\n")
    elif text:  # an empty case: no file at all
        path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        return str(exc).replace(str(directory.resolve()), "$DIR").replace(str(directory), "$DIR")
    return "(accepted)"


def render(messages: list[str]) -> str:
    lines = [
        "# Refused configurations",
        "",
        "Every configuration below is refused by `botvisor check-config` and `botvisor run` (exit 78)",
        "and by a reload (the running fleet stays as it was), with exactly the message shown; `$DIR` is",
        "the directory of the file. The table is generated from the test matrix (tests/bad_configs.py,",
        "checked by tests/test_bad_configs.py), so it cannot drift. What only the running service can",
        "know (a directory made unwritable or replaced by a file after start) ends the bot `failed`",
        "with `bad-bot-dir` and the cause in `status`; `check-config` and `run` also refuse a directory",
        "the user running them cannot create or write.",
        "",
        "| # | kind | configuration | message |",
        "| --- | --- | --- | --- |",
    ]
    for i, (case, message) in enumerate(zip(CASES, messages), 1):
        cell = message.replace("|", "\\|").replace("\n", " ")
        if len(cell) > 300:
            cell = cell[:300] + " ..."
        lines.append(f"| {i} | {case.group} | {case.what} | `` {cell} `` |")
    return "\n".join(lines) + "\n"


def all_messages() -> list[str]:
    messages = []
    for case in CASES:
        with tempfile.TemporaryDirectory(prefix="bv-badcfg-") as tmp:
            messages.append(run_case(case, Path(tmp)))
    return messages


if __name__ == "__main__":
    print(render(all_messages()), end="")
