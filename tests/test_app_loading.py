"""Loading an app: the two forms of ``app``, and errors that name the file, the line and the
reason (worker/app/loader.py), as `botvisor check-config` and `botvisor run` report them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from botvisor import Bot
from protocol.config import ConfigError, load_config
from supervisor.appcheck import check_apps
from worker.app.loader import AppLoadError, load_app, parse_app

from .harness import REPO

GOOD = "from botvisor import Bot\nbot = Bot()\n"


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def test_path_and_module_forms_load(tmp_path: Path):
    write(tmp_path, "apps/one.py", GOOD)
    write(tmp_path, "mypkg/__init__.py", "")
    write(tmp_path, "mypkg/shop.py", GOOD)
    assert isinstance(load_app(parse_app("apps/one.py:bot", str(tmp_path))), Bot)
    assert isinstance(load_app(parse_app("mypkg.shop:bot", str(tmp_path))), Bot), "found in the config's directory"


@pytest.mark.parametrize("source, line, reason", [
    ("from botvisor import Bot\nbot = Bot(\n", 2, "SyntaxError"),
    ("from botvisor import Bot\n\nimport no_such_module_xyz\nbot = Bot()\n", 3, "No module named 'no_such_module_xyz'"),
    ("from botvisor import Bot\nbot = Bot()\nundefined_name + 1\n", 3, "NameError"),
])
def test_import_errors_name_the_file_and_line(tmp_path: Path, source: str, line: int, reason: str):
    path = write(tmp_path, "app.py", source)
    with pytest.raises(AppLoadError) as caught:
        load_app(parse_app("app.py:bot", str(tmp_path)))
    assert caught.value.file == str(path) and caught.value.line == line, (caught.value.file, caught.value.line)
    assert reason in caught.value.reason
    assert f"{path}:{line}:" in str(caught.value)


def test_missing_attribute_not_an_app_and_missing_file(tmp_path: Path):
    write(tmp_path, "app.py", "from botvisor import Bot\nbot = 42\n")
    with pytest.raises(AppLoadError, match="has no attribute 'robot'"):
        load_app(parse_app("app.py:robot", str(tmp_path)))
    with pytest.raises(AppLoadError, match="'bot' is a int, not a botvisor Bot"):
        load_app(parse_app("app.py:bot", str(tmp_path)))
    with pytest.raises(AppLoadError, match="no such file"):
        load_app(parse_app("nope.py:bot", str(tmp_path)))
    with pytest.raises(AppLoadError, match="no module named 'nopkg'"):
        load_app(parse_app("nopkg.mod:bot", str(tmp_path)))


@pytest.mark.parametrize("value", ["app.py", "app.py:", "pkg-name.mod:bot", ":bot", "app.py:not an id"])
def test_a_malformed_app_setting_is_a_config_error(tmp_path: Path, value: str):
    config = write(tmp_path, "botvisor.toml", f'[[bots]]\nid = "b1"\napp = "{value}"\n')
    with pytest.raises(ConfigError, match=r"bots\[0\] \(b1\)\.app"):
        load_config(config)


def test_app_config_needs_an_app_and_app_root_is_not_a_key(tmp_path: Path):
    config = write(tmp_path, "botvisor.toml", '[[bots]]\nid = "b1"\n[bots.app_config]\nx = 1\n')
    with pytest.raises(ConfigError, match="app_config.*without an app"):
        load_config(config)
    config.write_text('[[bots]]\nid = "b1"\napp_root = "/"\n')
    with pytest.raises(ConfigError, match="app_root"):
        load_config(config)


def test_the_path_form_is_relative_to_the_config_file(tmp_path: Path):
    write(tmp_path, "conf/bots/app.py", GOOD)
    config = write(tmp_path, "conf/botvisor.toml", '[[bots]]\nid = "b1"\napp = "bots/app.py:bot"\n'
                   '[bots.app_config]\ngreeting = "hi"\nadmins = ["1555"]\n')
    bot = load_config(config).bot("b1")
    assert bot.app == f"{tmp_path / 'conf' / 'bots' / 'app.py'}:bot" and bot.app_root == str(tmp_path / "conf")
    assert bot.app_config == {"greeting": "hi", "admins": ["1555"]} and bot.handler_timeout == 30.0


def test_check_apps_imports_in_a_throwaway_process_and_never_here(tmp_path: Path):
    write(tmp_path, "good.py", GOOD)
    write(tmp_path, "bad.py", "from botvisor import Bot\nimport os\nraise SystemExit('refusing to load')\n")
    write(tmp_path, "noisy.py", "print('hello from import')\nfrom botvisor import Bot\nbot = Bot()\n")
    config = write(tmp_path, "botvisor.toml", '[[bots]]\nid = "g"\napp = "good.py:bot"\n'
                   '[[bots]]\nid = "b"\napp = "bad.py:bot"\n[[bots]]\nid = "n"\napp = "noisy.py:bot"\n'
                   '[[bots]]\nid = "plain"\n')
    checks = check_apps(load_config(config).bots)
    assert set(checks) == {"g", "b", "n"}, "bots without an app are not checked"
    assert checks["g"].ok and checks["n"].ok, "an app printing while it imports is fine"
    assert checks["g"].watch == (str(tmp_path),)
    assert not checks["b"].ok and "refusing to load" in checks["b"].reason and checks["b"].line == 3
    assert "botvisor_app_noisy" not in sys.modules and "botvisor_app_bad" not in sys.modules, "imported here"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_check_config_reports_a_broken_app_and_run_refuses_it_with_78(tmp_path: Path):
    write(tmp_path, "app.py", "from botvisor import Bot\n\nbot = Bot()\nbot.on('nonsense')\n")
    config = write(tmp_path, "botvisor.toml", f'[supervisor]\nrun_dir = "{tmp_path}/run"\n'
                   '[[bots]]\nid = "b1"\napp = "app.py:bot"\n')
    checked = run_cli("check-config", "-c", str(config))
    assert checked.returncode == 78
    assert f"{tmp_path / 'app.py'}:4:" in checked.stderr and "unknown event type 'nonsense'" in checked.stderr
    assert "bot b1" in checked.stderr
    ran = run_cli("run", "-c", str(config))
    assert ran.returncode == 78 and "unknown event type 'nonsense'" in ran.stderr
    assert not (tmp_path / "run").exists(), "nothing was started"
    write(tmp_path, "app.py", GOOD)
    assert run_cli("check-config", "-c", str(config)).returncode == 0


def test_check_apps_reports_a_bot_user_that_does_not_exist(tmp_path: Path):
    import os

    if os.geteuid() != 0:
        pytest.skip("the import check changes user only when botvisor runs as root")
    write(tmp_path, "good.py", GOOD)
    config = write(tmp_path, "botvisor.toml", '[[bots]]\nid = "g"\napp = "good.py:bot"\nuser = "no-such-user-bv"\n')
    check = check_apps(load_config(config).bots)["g"]
    assert not check.ok and "no-such-user-bv" in check.reason
