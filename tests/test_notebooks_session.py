"""notebook.py: the parameters' overrides, the output folder, the sandbox, commands as typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler_workbench.exceptions import ProfileError, WorkbenchError
from scaler_workbench.notebook import OVERRIDES, start_session

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"seed": 0, "sites": 1, "meters_per_site": 1, "end": "2024-02-01"}


def test_a_sandbox_session_works_on_a_copy_and_restores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCALER_SANDBOX_URL", raising=False)
    monkeypatch.delenv("SANDBOX_API_KEY", raising=False)
    session = start_session(
        "sandbox", workdir=ROOT / "mappings" / "sandbox", out=tmp_path / "o", sandbox_options=SMALL
    )
    try:
        assert session.sandbox is not None and session.environment == "sandbox"
        assert session.workdir == tmp_path / "o" / "work" / "sandbox"
        assert (
            session.profile_path.read_text() == (ROOT / "mappings/sandbox/profile.toml").read_text()
        )
        assert session.profile.base_url() == session.sandbox.url
        key = session.sandbox.credentials.api_key
        assert key not in repr(session) and key not in session._repr_html_()
        assert __import__("os").environ["SANDBOX_API_KEY"] == key
    finally:
        session.stop()
    assert "SANDBOX_API_KEY" not in __import__("os").environ


def test_environment_variables_override_the_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OVERRIDES["out"], str(tmp_path / "elsewhere"))
    monkeypatch.setenv(OVERRIDES["environment"], "uat")
    session = start_session("ecostruxure", workdir=ROOT / "mappings" / "ecostruxure", out="ignored")
    assert session.out == tmp_path / "elsewhere" and session.environment == "uat"
    assert session.sandbox is None and session.workdir == ROOT / "mappings" / "ecostruxure"
    assert session.profile.base_url().startswith("https://")
    assert not Path("ignored").exists()


def test_connects_to_a_running_sandbox_instead_of_starting_one(
    small_sandbox, tmp_path: Path
) -> None:
    running = small_sandbox()  # exports SCALER_SANDBOX_URL
    session = start_session("sandbox", workdir=ROOT / "mappings" / "sandbox", out=tmp_path)
    assert session.sandbox is None and session.profile.base_url() == running.url


def test_the_output_folder_is_emptied_only_when_a_session_made_it(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(WorkbenchError, match="not made by a notebook") as info:
        start_session("ecostruxure", workdir=ROOT / "mappings" / "ecostruxure", out=tmp_path)
    assert info.value.hint and (tmp_path / "precious.txt").exists()
    out = tmp_path / "nb"
    start_session("ecostruxure", workdir=ROOT / "mappings" / "ecostruxure", out=out)
    (out / "old.csv").write_text("x")
    start_session("ecostruxure", workdir=ROOT / "mappings" / "ecostruxure", out=out)
    assert not (out / "old.csv").exists()


def test_a_work_folder_without_a_profile(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"no profile\.toml"):
        start_session("nobody", workdir=tmp_path, out=tmp_path / "o")


def test_shell_runs_a_command_as_typed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    session = start_session("ecostruxure", workdir=ROOT / "mappings" / "ecostruxure", out=tmp_path)
    assert session.shell("scaler-workbench sync --profile x.toml") == 2  # a usage error
    shown = capsys.readouterr().out
    assert shown.startswith("$ scaler-workbench sync --profile x.toml")
    assert "unrecognized arguments" in shown or "required" in shown
    assert "(exit code 2)" in shown
    with pytest.raises(WorkbenchError, match="not a scaler-workbench command"):
        session.shell("rm -rf /")
