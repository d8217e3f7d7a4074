"""``[notify]``: a webhook hears about partial and failed runs; it never changes their result.

Against a loopback receiver (tests/_fakes.py FakeServer) and the small sandbox.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _fakes import FakeServer, Reply

from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import AuthError, ProfileError
from scaler_workbench.notify import NotifyConfig, notify_run, read_notify
from scaler_workbench.profile import Profile, read_profile, to_profile_toml
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sync import SyncResult, run_sync

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
HOOK_TOKEN = "T0001-B0002-hook-token-4b1c9e"  # a webhook URL carries its token in the path


def _profile(**notify: Any) -> Profile:
    data = read_profile(SANDBOX_PROFILE).to_dict()
    data["notify"] = notify
    return Profile.from_dict(data)


def _hook(server: FakeServer) -> str:
    return f"{server.url}/services/{HOOK_TOKEN}"


def _sync(profile: Profile, out: Path) -> SyncResult:
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    return run_sync(profile, out=out, clock=clock, formats=("csv",), until="2024-04-01")


def _posts(server: FakeServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.requests if r.method == "POST"]


def test_a_partial_run_posts_its_summary_and_a_500_changes_nothing(
    small_sandbox: Callable[..., Sandbox],
    serve: Callable[..., FakeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sb = small_sandbox()
    sb.plant_discrepancy("M0004", "2024-02", 1.001)  # reconciliation fails: a partial run
    hook = serve(lambda req: Reply(500, {"error": "receiver down"}))
    monkeypatch.setenv("SCALER_WEBHOOK_URL", _hook(hook))
    profile = _profile(url_env="SCALER_WEBHOOK_URL")
    with caplog.at_level(logging.WARNING, logger="scaler_workbench"):
        result = _sync(profile, tmp_path / "a")
    assert (result.status, result.exit_code) == ("partial", 1)  # the 500 changed nothing
    (post,) = _posts(hook)
    assert hook.requests[0].path == f"/services/{HOOK_TOKEN}"
    assert hook.requests[0].headers["Content-Type"] == "application/json"
    assert post["status"] == "partial" and post["provider"] == "sandbox"
    assert post["run_id"] == result.run_id and post["exit_code"] == 1
    assert post["summary"]["partial_reasons"] == result.summary["partial_reasons"]
    assert any("M0004" in r for r in post["summary"]["partial_reasons"])
    raw = hook.requests[0].body.decode()
    assert sb.env()["SANDBOX_API_KEY"] not in raw and HOOK_TOKEN not in raw
    warnings = [r.getMessage() for r in caplog.records if "notify" in r.getMessage()]
    assert warnings and "HTTP 500" in warnings[0] and "result stands" in warnings[0]
    assert HOOK_TOKEN not in caplog.text
    # the same run without [notify] ends the same way
    plain = _sync(read_profile(SANDBOX_PROFILE), tmp_path / "b")
    assert (plain.status, plain.exit_code) == (result.status, result.exit_code)


def test_a_failed_run_posts_the_error_and_still_raises_it(
    small_sandbox: Callable[..., Sandbox],
    serve: Callable[..., FakeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_sandbox()
    monkeypatch.setenv("SANDBOX_API_KEY", "not-the-key-0000")
    hook = serve(lambda req: Reply(200, {"ok": True}))
    monkeypatch.setenv("SCALER_WEBHOOK_URL", _hook(hook))
    with pytest.raises(AuthError):
        _sync(_profile(url_env="SCALER_WEBHOOK_URL"), tmp_path)
    (post,) = _posts(hook)
    assert post["status"] == "failed" and post["error"]["type"] == "AuthError"
    assert post["error"]["message"] and "not-the-key-0000" not in hook.requests[0].body.decode()


def test_a_successful_run_is_not_reported_unless_asked(
    small_sandbox: Callable[..., Sandbox],
    serve: Callable[..., FakeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_sandbox()
    hook = serve(lambda req: Reply(204))
    monkeypatch.setenv("SCALER_WEBHOOK_URL", _hook(hook))
    assert _sync(_profile(url_env="SCALER_WEBHOOK_URL"), tmp_path / "a").status == "success"
    assert hook.requests == []  # default on = ["partial", "failed"]
    r = _sync(_profile(url_env="SCALER_WEBHOOK_URL", on=["success"]), tmp_path / "b")
    (post,) = _posts(hook)
    assert post["status"] == r.status == "success"


# -- the webhook failing in every way: logged, never raised ------------------------------------
def _result() -> SyncResult:
    return SyncResult(
        run_id=7,
        status="partial",
        mode="full",
        export_dir=None,
        state_path=Path("state.sqlite"),
        summary={"partial_reasons": ["2 quarantined record(s)"]},
    )


def test_a_refused_connection_is_a_warning(
    serve: Callable[..., FakeServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = serve(lambda req: Reply(200))
    url = _hook(server)
    server.close()  # nothing listens on that port any more
    monkeypatch.setenv("HOOK", url)
    config = NotifyConfig(url_env="HOOK", timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="scaler_workbench"):
        ok = notify_run(_profile(url_env="HOOK"), status="partial", result=_result(), config=config)
    assert ok is False
    assert "could not be reached (ConnectionError)" in caplog.text and HOOK_TOKEN not in caplog.text


def test_a_webhook_that_never_answers_times_out_as_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # a loopback socket that accepts connections (the kernel's backlog) but never answers
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        monkeypatch.setenv("HOOK", f"http://127.0.0.1:{port}/services/{HOOK_TOKEN}")
        config = NotifyConfig(url_env="HOOK", timeout=0.2)
        with caplog.at_level(logging.WARNING, logger="scaler_workbench"):
            ok = notify_run(
                _profile(url_env="HOOK"), status="partial", result=_result(), config=config
            )
    assert ok is False and "ReadTimeout" in caplog.text and HOOK_TOKEN not in caplog.text


def test_an_unset_variable_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("HOOK_UNSET", raising=False)
    profile = _profile(url_env="HOOK_UNSET")
    with caplog.at_level(logging.WARNING, logger="scaler_workbench"):
        assert notify_run(profile, status="failed", error=RuntimeError("x")) is False
    assert "HOOK_UNSET is not set" in caplog.text


def test_a_2xx_answer_counts_as_delivered(
    serve: Callable[..., FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(lambda req: Reply(202))
    monkeypatch.setenv("HOOK", _hook(server))
    assert notify_run(_profile(url_env="HOOK"), status="partial", result=_result()) is True
    assert _posts(server)[0]["summary"]["partial_reasons"] == ["2 quarantined record(s)"]


# -- the profile section ---------------------------------------------------------------------------
def test_read_notify_defaults_and_none() -> None:
    assert read_notify(read_profile(SANDBOX_PROFILE)) is None
    assert read_notify(_profile(url_env="SCALER_WEBHOOK_URL")) == NotifyConfig(
        url_env="SCALER_WEBHOOK_URL", on=("partial", "failed"), timeout=10.0
    )


@pytest.mark.parametrize(
    ("notify", "key"),
    [
        ({"url_env": "HOOK", "colour": "red"}, "notify.colour"),
        ({"url_env": "not a variable"}, "notify.url_env"),
        ({}, "notify.url_env"),
        ({"url_env": "HOOK", "on": ["partial", "sometimes"]}, "notify.on"),
        ({"url_env": "HOOK", "timeout": 0}, "notify.timeout"),
        ({"url_env": "HOOK", "timeout": True}, "notify.timeout"),
    ],
)
def test_a_bad_notify_section_is_a_profile_error(notify: dict[str, Any], key: str) -> None:
    data = read_profile(SANDBOX_PROFILE).to_dict()
    data["notify"] = notify or {"on": ["failed"]}
    with pytest.raises(ProfileError) as err:
        read_notify(Profile.from_dict(data))
    assert err.value.key == key


def test_a_literal_webhook_url_is_refused(tmp_path: Path) -> None:
    data = read_profile(SANDBOX_PROFILE).to_dict()
    data["notify"] = {"url": f"https://hooks.example.com/services/{HOOK_TOKEN}"}
    with pytest.raises(ProfileError) as err:
        Profile.from_dict(data)
    assert err.value.key == "notify.url" and HOOK_TOKEN not in str(err.value)
    with pytest.raises(ProfileError):
        to_profile_toml(data)
    # a profile file with [notify] url_env round-trips
    data["notify"] = {"url_env": "SCALER_WEBHOOK_URL", "on": ["failed"], "timeout": 5}
    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(data), encoding="utf-8")
    assert read_notify(read_profile(path)) == NotifyConfig("SCALER_WEBHOOK_URL", ("failed",), 5.0)


def test_a_bad_notify_section_stops_the_sync_before_it_starts(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"notify\.on"):
        run_sync(_profile(url_env="HOOK", on=["never"]), out=tmp_path)
    assert not (tmp_path / "state").exists()
