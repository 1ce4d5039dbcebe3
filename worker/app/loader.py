"""Finding and importing an app: ``package.module:attribute`` or ``path/to/file.py:attribute``.

Errors name the file, the line and the reason (a SyntaxError's own position, or the deepest
frame of the app's code in an exception raised while importing it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from protocol.appref import is_path_form, split_app


class AppLoadError(Exception):
    def __init__(self, reason: str, file: str | None = None, line: int | None = None) -> None:
        where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
        super().__init__(where + reason)
        self.reason, self.file, self.line = reason, file, line


@dataclass(frozen=True, slots=True)
class AppRef:
    """A parsed ``app`` setting."""

    #: a module name, or an absolute path to a .py file
    target: str
    attribute: str
    #: the configuration file's directory: module names are found there first
    root: str

    @property
    def is_path(self) -> bool:
        return is_path_form(self.target)


def parse_app(value: str, root: str) -> AppRef:
    target, attribute = split_app(value)
    if is_path_form(target):
        target = str((Path(root) / target).resolve())
    return AppRef(target, attribute, root)


def _import(ref: AppRef) -> ModuleType:
    if ref.is_path:
        path = Path(ref.target)
        if not path.is_file():
            raise AppLoadError("no such file", str(path))
        name = f"botvisor_app_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise AppLoadError("not a Python file", str(path))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        parent = str(path.parent)
        if parent not in sys.path:  # its sibling modules import as in a script
            sys.path.insert(0, parent)
        spec.loader.exec_module(module)
        return module
    if ref.root and ref.root not in sys.path:
        sys.path.insert(0, ref.root)
    return importlib.import_module(ref.target)


def _where(exc: BaseException, ref: AppRef) -> tuple[str | None, int | None]:
    """The line of the app's own code that failed: a SyntaxError's position, else the deepest frame
    in the app's directory (an error raised inside a library points at the app's call of it)."""
    if isinstance(exc, SyntaxError):
        return exc.filename, exc.lineno
    frames = traceback.extract_tb(exc.__traceback__)
    home = str(Path(ref.target).parent) if ref.is_path else ref.root
    ours = [f for f in frames if home and f.filename.startswith(home + os.sep)]
    if not ours:
        ours = [f for f in frames if "importlib" not in f.filename and not f.filename.startswith("<frozen")]
    if ours:
        return ours[-1].filename, ours[-1].lineno
    return (ref.target if ref.is_path else None), None


def load_app(ref: AppRef) -> Any:
    """Import the app and return its Bot; AppLoadError saying where and why it cannot be."""
    from botvisor.app import is_app

    try:
        module = _import(ref)
    except AppLoadError:
        raise
    except ModuleNotFoundError as exc:
        if not ref.is_path and exc.name and (ref.target == exc.name or ref.target.startswith(exc.name + ".")):
            raise AppLoadError(f"no module named {exc.name!r} (looked in {ref.root} and sys.path)") from None
        file, line = _where(exc, ref)
        raise AppLoadError(f"import failed: {type(exc).__name__}: {exc}", file, line) from None
    except BaseException as exc:  # the app's own code failed while importing: SyntaxError, NameError, ...
        if isinstance(exc, KeyboardInterrupt):
            raise
        file, line = _where(exc, ref)
        reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise AppLoadError(f"import failed: {type(exc).__name__}: {reason}", file, line) from None
    file = getattr(module, "__file__", None)
    try:
        value = getattr(module, ref.attribute)
    except AttributeError:
        raise AppLoadError(f"module {module.__name__!r} has no attribute {ref.attribute!r}", file) from None
    if not is_app(value):
        raise AppLoadError(f"{ref.attribute!r} is a {type(value).__name__}, not a botvisor Bot "
                           "(make it with `bot = Bot()`)", file)
    return value


def app_files(bot_app: Any, ref: AppRef) -> list[Path]:
    """Source files that make up an app, for --watch: its module's directory tree (.py files)."""
    if ref.is_path:
        return [Path(ref.target).parent]
    module = sys.modules.get(ref.target)
    file = getattr(module, "__file__", None)
    return [Path(file).resolve().parent] if file else []
