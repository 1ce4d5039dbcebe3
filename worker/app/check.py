"""``python -m worker.app.check APP ROOT``: import an app in a throw-away process and say whether
it loads (`botvisor check-config` and `botvisor run` use this, so the supervisor never imports
an app). Prints one JSON line: {"ok": true, "watch": [directories of its code]} or {"ok": false, "reason", "file", "line"}."""

from __future__ import annotations

import json
import os
import sys

from .loader import AppLoadError, app_files, load_app, parse_app


def main(argv: list[str]) -> int:
    value, root = argv[0], argv[1]
    # the app's own prints during import must not corrupt the answer: keep the real stdout aside
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        ref = parse_app(value, root)
        app = load_app(ref)
    except AppLoadError as exc:
        out.write(json.dumps({"ok": False, "reason": exc.reason, "file": exc.file, "line": exc.line}) + "\n")
        return 1
    except ValueError as exc:
        out.write(json.dumps({"ok": False, "reason": str(exc), "file": None, "line": None}) + "\n")
        return 1
    out.write(json.dumps({"ok": True, "watch": [str(p) for p in app_files(app, ref)]}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
