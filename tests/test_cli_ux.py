"""The command line as schedulers and people meet it (issue 16 item 7): progress and retries,
options anywhere, the sandbox's own options, one error line with the cause first, a 404 path,
date ranges, paths that do not work, a closed pipe, ``init`` and ``check``, the ready line.

Every sync here talks to the sandbox over loopback HTTP; backoff is zero (no real sleeps)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from openpyxl import load_workbook

from scaler_workbench import cli
from scaler_workbench.connectors._events import FetchEvent
from scaler_workbench.exceptions import CredentialError
from scaler_workbench.profile import read_profile, to_profile_toml
from scaler_workbench.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
UNTIL = "2024-04-01"


def profile_copy(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The sandbox profile without backoff waits (and with ``edit`` applied)."""
    data = read_profile(PROFILE).to_dict()
    data["client"].update(backoff_base=0.0, jitter=0.0)
    if edit is not None:
        edit(data)
    path = tmp_path / "profile.toml"
    path.write_text(to_profile_toml(data), encoding="utf-8")
    return path


def _run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler_workbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kw,
    )


# -- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--debug", "-q", "status", "p.toml"],
        ["status", "p.toml", "--json", "--debug", "-q"],
        ["--json", "status", "p.toml", "--debug", "--quiet"],
    ],
)
def test_global_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = cli._parser().parse_args(argv)
    assert (args.json, args.debug, args.quiet) == (True, True, True)
    assert args.profile == "p.toml" and args.out is None


def test_global_options_default_to_off_either_way() -> None:
    args = cli._parser().parse_args(["sync", "p.toml", "--out", "o"])
    assert (args.json, args.debug, args.quiet) == (False, False, False)
    assert args.out == "o"


def test_json_before_the_command_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--json", "status", str(PROFILE), "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []


def test_sandbox_passes_its_options_through() -> None:
    proc = _run(["sandbox", "--seed", "1", "--sites", "1", "--lifetime", "0.3"])
    assert proc.returncode == 0, proc.stderr
    assert "export SANDBOX_API_KEY=" in proc.stdout and "meters=3" in proc.stdout
    help_ = _run(["sandbox", "--help"])
    assert help_.returncode == 0 and "--meters-per-site" in help_.stdout
    assert help_.stdout.startswith("usage: scaler-workbench sandbox")
    bad = _run(["sandbox", "--no-such-option"])
    assert bad.returncode == 2 and "unrecognized arguments: --no-such-option" in bad.stderr


# -- progress and retries ------------------------------------------------------------------------
def test_sync_counts_requests_pages_records_and_retries_and_logs_each_retry(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_sandbox(every_nth_503=4)
    fast = profile_copy(tmp_path)
    code = cli.main(["sync", str(fast), "--out", str(tmp_path / "o"), "--until", UNTIL])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    (fetched,) = [line for line in lines if line.startswith("  fetched: ")]
    # e.g. "fetched: 68 requests (planned ~10), 51 pages, 17,424 records, 17 retries"
    words = fetched.replace(",", "").split()
    requests, pages, records, retries = (int(words[i - 1]) for i in (2, 6, 8, 10))
    assert words[2] == "requests" and words[3] == "(planned"
    assert requests == pages + retries and retries > 0 and records > 10_000
    retry_lines = [line for line in captured.err.splitlines() if "retrying in" in line]
    assert len(retry_lines) == retries
    assert all(
        " -> 503; attempt " in line and " of 6 failed, retrying in 0.0s" in line
        for line in retry_lines
    )
    assert lines[-1] == "ready: yes"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_bar_shows_resource_pages_records_retries_and_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = _Tty()
    monkeypatch.setattr(sys, "stderr", screen)
    args = SimpleNamespace(json=False, quiet=False)
    progress = cli._Progress(args, (2, False))  # type: ignore[arg-type]
    try:
        progress.stage("fetch")
        progress.event(FetchEvent("resource", resource="intervals", sequences=6))
        progress.event(FetchEvent("retry", status=503, attempt=1, max_attempts=6, wait=30.0))
        waiting = screen.getvalue()
        progress.event(FetchEvent("request", status=200))
        progress.event(FetchEvent("page", resource="intervals", records=1500))
        progress.event(FetchEvent("request", status=200))
        progress.event(FetchEvent("request", status=200))  # past the estimate of 2
        progress.event(FetchEvent("page", resource="intervals", records=20))
        progress.bar.refresh()
        text = screen.getvalue()
    finally:
        progress.close()
    assert "503: retry 1/5 in 30s" in waiting
    assert "sync: fetch" in text and "intervals · pages 2 · records 1,520 · retries 1" in text
    assert "3req" in text.replace(" ", "")  # counted on past the plan, no 150 %
    assert progress.counts() == "3 requests (planned ~2), 2 pages, 1,520 records, 1 retries"


# -- errors --------------------------------------------------------------------------------------
def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_provider_down_prints_one_error_line_with_the_cause_first(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_sandbox(every_nth_503=1)
    fast = profile_copy(tmp_path, lambda d: d["client"].update(max_attempts=2))
    code = cli.main(["sync", str(fast), "--out", str(tmp_path / "o"), "--until", UNTIL])
    err = capsys.readouterr().err
    assert code == cli.EXIT_PROVIDER_DOWN
    (line,) = _error_lines(err)
    assert line.startswith("error: GET http://127.0.0.1:") and " -> 503 after 2 attempts: " in line
    assert line.endswith("(every page of 'sites' failed: the provider is unavailable)")
    assert err.count("service_unavailable") == 1  # the body once: the warning is short
    assert "more chars" not in err and "Traceback" not in err
    assert err.splitlines()[-1] == f"not ready: the sync did not finish (exit {code})"


def test_unreachable_provider_names_the_root_cause(
    small_sandbox: Callable[..., Sandbox],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    small_sandbox()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SCALER_SANDBOX_URL", f"http://127.0.0.1:{port}/api/v1")
    fast = profile_copy(tmp_path, lambda d: d["client"].update(max_attempts=1))
    assert cli.main(["sync", str(fast), "--out", str(tmp_path / "o")]) == cli.EXIT_PROVIDER_DOWN
    (line,) = _error_lines(capsys.readouterr().err)
    assert "Connection refused" in line and "more chars" not in line and "object at 0x" not in line


def test_wrong_resource_path_is_not_found_exit_2_not_unavailable(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_sandbox()

    def typo(d: dict[str, Any]) -> None:
        d["resources"]["sites"]["path"] = "/sitez"

    bad = profile_copy(tmp_path, typo)
    code = cli.main(["sync", str(bad), "--out", str(tmp_path / "o"), "--json"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_USAGE == 2
    payload = json.loads(captured.out)
    assert payload["error"] == "ResourceNotFoundError" and payload["exit_code"] == 2
    (line,) = _error_lines(captured.err)
    assert "-> 404: not found" in line and "/sitez" in line and "unavailable" not in line
    assert "resource's path" in payload["hint"]


def test_since_after_until_is_a_usage_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["sync", str(PROFILE), "--out", str(out), "--since", "2024-03-01", "--until", "2024-02"]
    assert cli.main([*argv[:-1], "2024-02-01"]) == cli.EXIT_USAGE
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--since 2024-03-01 is not before --until 2024-02-01" in line
    assert not out.exists()
    assert cli.main([*argv[:-1], "2024-03-01"]) == cli.EXIT_USAGE  # an empty range too


def test_future_since_warns(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_sandbox()
    argv = ["sync", str(profile_copy(tmp_path)), "--out", str(tmp_path / "o")]
    cli.main([*argv, "--since", "2999-01-01", "--until", "2999-02-01", "--dry-run"])
    err = capsys.readouterr().err
    assert "WARNING" in err and "--since 2999-01-01 is in the future" in err


def test_folder_as_profile_says_so_and_names_the_file_inside(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["status", str(PROFILE.parent)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"error: {PROFILE.parent} is a folder, not a profile TOML" in err
    assert f"-> Give the profile file inside it: {PROFILE}" in err and "unexpected" not in err


def test_unwritable_out_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = cli.main(["sync", str(PROFILE), "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert f"error: --out {blocker / 'out'}: cannot write there" in err
    assert "unexpected" not in err and "report it" not in err


def test_closed_pipe_is_not_an_unexpected_error(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already gone: every write fails with EPIPE
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "scaler_workbench.cli",
                "status",
                str(PROFILE),
                "--out",
                str(tmp_path),
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "unexpected" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr


def test_credential_hints_never_suggest_a_dotenv_file() -> None:
    from scaler_workbench import widgets

    assert ".env" not in CredentialError("x").hint
    assert ".env file" not in Path(widgets.__file__).read_text(encoding="utf-8")


# -- init and check ------------------------------------------------------------------------------
def test_init_scaffolds_a_profile_and_an_empty_workbook_then_check_names_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "acme-energy", "--dir", str(tmp_path)]) == 0
    folder = tmp_path / "acme-energy"
    profile = read_profile(folder / "profile.toml")
    assert profile.name == "acme-energy"
    assert profile.section("auth")["key_env"] == "ACME_ENERGY_API_KEY"
    env = profile.env()
    assert env.base_url_env == "SCALER_ACME_ENERGY_URL" and not env.builtin_sandbox
    assert "127.0.0.1" not in (folder / "profile.toml").read_text(encoding="utf-8")
    mapping = profile.section("mapping")
    assert mapping["meters"]["resource"] == "meters" and mapping["meters"]["fields"] == {}
    assert {"assets", "meters"} <= set(load_workbook(folder / "mapping.xlsx").sheetnames)
    out = capsys.readouterr().out
    assert "ACME_ENERGY_API_KEY" in out and "scaler-workbench check" in out

    # an existing scaffold is kept unless --force
    assert cli.main(["init", "acme-energy", "--dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert "already exist" in capsys.readouterr().err
    assert cli.main(["init", "x", "--like", "nope", "--dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert "Pick one of: " in capsys.readouterr().err

    # the empty workbook is not a mapping yet: check says where, exit 2
    assert cli.main(["check", str(folder / "profile.toml"), "--json"]) == cli.EXIT_USAGE
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False and payload["errors"] >= 1
    first = payload["findings"][0]
    assert first["sheet"] == "assets" and first["cell"] and "not mapped" in first["message"]


def test_init_like_another_shipped_profile_never_keeps_its_hosts(tmp_path: Path) -> None:
    made = cli.scaffold_provider("acme", like="octopus", folder=tmp_path)
    text = Path(made["profile"]).read_text(encoding="utf-8")
    assert "octopus.energy" not in text and "https://api.example.com" in text
    assert made["env"] == ["ACME_API_KEY", "ACME_BASE_URL"]


def test_check_passes_a_shipped_profile_and_fails_a_bad_setting_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", str(PROFILE)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("no problems found")

    def typo(d: dict[str, Any]) -> None:
        d["mapping"]["usage"]["intervals"]["kind"] = "interval"

    bad = profile_copy(tmp_path, typo)
    assert cli.main(["check", str(bad)]) == cli.EXIT_USAGE
    out = capsys.readouterr().out
    assert "error: " in out and "kind = 'interval'" in out and "cell B" in out
    assert out.splitlines()[-1].endswith("1 error(s), 0 warning(s)")


# -- the last line -------------------------------------------------------------------------------
def test_not_ready_reasons_come_from_status_gate_and_partial_reasons() -> None:
    def result(status: str, **summary: Any) -> Any:
        return SimpleNamespace(status=status, summary=summary)

    assert cli.not_ready_reasons(result("success", ready_to_export={"ready": True})) == []
    partial = result(
        "partial",
        ready_to_export={"ready": False, "reasons": ["2 meter-months missing"]},
        partial_reasons=["2 meter-months missing", "1 record quarantined"],
    )
    assert cli.not_ready_reasons(partial) == [
        "the run is partial",
        "2 meter-months missing",
        "1 record quarantined",
    ]
    assert cli.not_ready_reasons(result("dry-run")) == ["a dry run writes no files"]


def test_token_endpoint_retries_are_logged_like_requests(
    serve: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    from datetime import UTC, datetime

    from _fakes import Reply

    from scaler_workbench.clock import FakeClock
    from scaler_workbench.connectors._transport import RetryPolicy, post_token_form

    answers = iter([Reply(503, {"error": "busy"}), Reply(200, {"access_token": "t"})])
    server = serve(lambda request: next(answers))
    policy = RetryPolicy(max_attempts=3, backoff_base=2.0, jitter=0.0)
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    with caplog.at_level(logging.INFO, logger="scaler_workbench.connectors._transport"):
        body = post_token_form(
            f"{server.url}/token", {"grant_type": "x"}, retry=policy, clock=clock
        )
    assert body == {"access_token": "t"}
    (line,) = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert line == f"POST {server.url}/token -> 503; attempt 1 of 3 failed, retrying in 2.0s"
