"""What only the running service can know about its directories ends in a clear error (issue 14, defect 4)."""

from __future__ import annotations

import pytest

from protocol import ContainerState as S
from protocol import StateChange
from supervisor.sockets import RunDirError, lock_run_dir


def test_a_bot_dir_that_cannot_be_made_fails_the_bot_fatally_with_the_cause(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    fleet.auth_dir.mkdir()
    (fleet.auth_dir / "test").write_text("not a directory\n")  # auth/<server> replaced by a file
    service, tap = launch(fleet)
    failed = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is S.FAILED,
                          timeout=20, what="b1 failed")
    assert "bad-bot-dir" in failed.reason and "Not a directory" in failed.reason, failed.reason
    status = service.control("status", {"bots": ["b1"]})["bots"][0]
    assert status["container_state"] == "failed" and status["restarts"] == 0, status
    assert "bad-bot-dir" in status["reason"]


def test_a_run_dir_that_cannot_be_made_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError, match=r"cannot use run_dir .*afile/run: Not a directory"):
        lock_run_dir(tmp_path / "afile" / "run", 1)
