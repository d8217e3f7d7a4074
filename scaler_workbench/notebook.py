"""Notebook sessions: parameters, the work folder and the sandbox in one call, and the docs build.

Each notebook in ``notebooks/`` starts with a papermill-style ``parameters`` cell (a code cell
tagged ``parameters`` holding plain assignments) and then one call::

    PROVIDER = "sandbox"                       # mappings/<provider>/ holds profile and workbook
    ENVIRONMENT = "sandbox"                    # a profile environment
    WORKDIR = f"../mappings/{PROVIDER}"
    OUT = "../out/notebooks/02"                # everything the notebook writes

    session = start_session(PROVIDER, environment=ENVIRONMENT, workdir=WORKDIR, out=OUT)

Each parameter can be overridden without editing the notebook, by papermill (``-p OUT ...``)
or by an environment variable (:data:`OVERRIDES`: ``WORKBENCH_PROVIDER``,
``WORKBENCH_ENVIRONMENT``, ``WORKBENCH_WORKDIR``, ``WORKBENCH_OUT``); CI and ``make docs`` set
``WORKBENCH_OUT`` so that runs never write into the source tree.

:func:`start_session` reads the profile from the work folder and, when the environment is a
built-in sandbox (``builtin_sandbox = true``), starts the matching simulator on loopback (the
generic :class:`~scaler_workbench.sandbox.Sandbox`, or the provider's own, e.g. EcoStruxure's,
chosen by ``[provider] connector``) and hands its credentials over through the environment. A
sandbox session works on a *copy* of the work folder inside ``out``, so a demo run never changes
``mappings/``; against a real provider the work folder is used in place.

:meth:`Session.shell` runs a ``scaler-workbench ...`` command line in-process, exactly as typed
in a terminal, so the commands a notebook shows are the commands it runs.

:func:`execute_notebook` and :func:`build_docs` (``python -m scaler_workbench.notebook docs``,
``make docs``) execute the notebooks with nbclient and render them to HTML with nbconvert.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaler_workbench._secrets import get_logger, redact
from scaler_workbench.exceptions import ProfileError, WorkbenchError

if TYPE_CHECKING:  # pragma: no cover
    from scaler_workbench.profile import Profile

__all__ = [
    "OVERRIDES",
    "SANDBOX_STARTERS",
    "Session",
    "build_docs",
    "execute_notebook",
    "start_session",
]

log = get_logger(__name__)

#: Environment variables that override a notebook's parameters cell.
OVERRIDES: dict[str, str] = {
    "provider": "WORKBENCH_PROVIDER",
    "environment": "WORKBENCH_ENVIRONMENT",
    "workdir": "WORKBENCH_WORKDIR",
    "out": "WORKBENCH_OUT",
}
#: File marking a folder as a notebook's output folder (only such folders are ever emptied).
_MARKER = ".workbench-notebook-out"


@dataclass
class Session:
    """What a notebook works with: its parameters, profile, output folder and sandbox.

    Attributes
    ----------
    provider, environment : str
        The parameters in effect (after overrides).
    workdir : Path
        The folder holding ``profile.toml`` and ``mapping.xlsx`` (a copy for sandbox runs).
    source : Path
        The work folder the parameters named (``mappings/<provider>``).
    out : Path
        Everything the notebook writes goes here.
    profile : Profile
        The profile, set to ``environment`` (pointed at the simulator for a sandbox run).
    sandbox : object or None
        The running simulator (``ground_truth()``, ``set_as_of()``, ...), or None.
    clock : object or None
        The simulator's clock when it uses one (EcoStruxure's :class:`FakeClock`).
    """

    provider: str
    environment: str
    workdir: Path
    source: Path
    out: Path
    profile: Profile
    sandbox: Any = None
    clock: Any = None
    _saved_env: dict[str, str | None] = field(default_factory=dict, repr=False)

    @property
    def profile_path(self) -> Path:
        """``workdir / "profile.toml"``."""
        return self.workdir / "profile.toml"

    def stop(self) -> None:
        """Stop the simulator and restore the environment variables it set."""
        if self.sandbox is not None:
            self.sandbox.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def shell(self, command: str) -> int:
        """Run a ``scaler-workbench ...`` command line in-process and print what it prints.

        Parameters
        ----------
        command : str
            The command exactly as typed in a terminal (``scaler-workbench sync PROFILE
            --out DIR``).

        Returns
        -------
        int
            The command's exit code (0 success, 1 partial, ...: docs/cli.md).

        Raises
        ------
        WorkbenchError
            If the line does not start with ``scaler-workbench``.
        """
        from scaler_workbench.cli import main

        argv = shlex.split(command)
        if not argv or argv[0] != "scaler-workbench":
            raise WorkbenchError(
                f"not a scaler-workbench command: {command!r}",
                hint="Start the line with scaler-workbench, as in a terminal.",
            )
        print(f"$ {command}")
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv[1:])
            except SystemExit as exc:  # argparse: a usage error
                code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        text = (stdout.getvalue() + stderr.getvalue()).rstrip()
        if text:
            print(redact(text))
        print(f"(exit code {code})")
        return code

    def _rows(self) -> list[tuple[str, str]]:
        rows = [
            ("provider", self.provider),
            ("environment", self.environment),
            ("work folder", str(self.workdir)),
            ("output folder", str(self.out)),
            ("base URL", self.profile.base_url()),
        ]
        if self.sandbox is not None:
            rows.append(("sandbox", f"{type(self.sandbox).__name__} on loopback"))
        if self.workdir != self.source:
            rows.append(("copied from", str(self.source)))
        return rows

    def __repr__(self) -> str:
        return "\n".join(f"{k:<14}{redact(v)}" for k, v in self._rows())

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td><code>{html.escape(redact(v))}</code></td></tr>"
            for k, v in self._rows()
        )
        return f"<table>{body}</table>"


def _override(name: str, value: Any) -> Any:
    env = os.environ.get(OVERRIDES[name], "").strip()
    return env if env else value


def _fresh_out(out: Path) -> None:
    """Empty ``out`` for a fresh run, but only if a notebook made it (the marker file)."""
    if out.exists() and any(out.iterdir()):
        if not (out / _MARKER).exists():
            raise WorkbenchError(
                f"the output folder {str(out)!r} is not empty and was not made by a notebook",
                hint="Point OUT (or WORKBENCH_OUT) at a new folder, e.g. ../out/notebooks/02.",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("made by scaler_workbench.notebook.start_session\n")


def start_session(
    provider: str,
    *,
    environment: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str],
    sandbox_options: Mapping[str, Any] | None = None,
    fresh: bool = True,
) -> Session:
    """Start (or connect to) what a notebook needs: profile, output folder, sandbox.

    Parameters
    ----------
    provider : str
        Provider name; the work folder defaults to ``mappings/<provider>``.
    environment : str, optional
        Profile environment (default: the profile's own).
    workdir : path-like, optional
        Folder with ``profile.toml`` (and ``mapping.xlsx``).
    out : path-like
        Output folder of the notebook.
    sandbox_options : dict, optional
        Options of the simulator (``seed``, ``sites``, ``meters_per_site``, ``end``,
        ``as_of``, ...), used when the environment is a built-in sandbox.
    fresh : bool
        Empty ``out`` first (only a folder an earlier session made).

    Every parameter but ``sandbox_options`` and ``fresh`` may be overridden by the environment
    variable named in :data:`OVERRIDES`.

    Returns
    -------
    Session

    Raises
    ------
    ProfileError
        If the work folder has no ``profile.toml`` or the environment is unknown.
    WorkbenchError
        If ``out`` is a non-empty folder no session made.
    """
    from scaler_workbench.profile import read_profile

    provider = str(_override("provider", provider))
    source = Path(_override("workdir", workdir or f"mappings/{provider}")).resolve()
    out_dir = Path(_override("out", out)).resolve()
    profile_path = source / "profile.toml"
    if not profile_path.is_file():
        raise ProfileError(
            f"no profile.toml in the work folder {str(source)!r}",
            key="",
            hint="Set WORKDIR to mappings/<provider> (or create one with profile.toml).",
        )
    base = read_profile(profile_path)
    env_name = str(_override("environment", environment or base.environment))
    profile = base.with_environment(env_name)
    if fresh:
        _fresh_out(out_dir)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
    env = profile.env()
    connect = bool(env.base_url_env and os.environ.get(env.base_url_env))
    if not env.builtin_sandbox or connect:
        return Session(provider, env_name, source, source, out_dir, profile)
    workdir_copy = out_dir / "work" / provider
    shutil.copytree(source, workdir_copy, dirs_exist_ok=True)
    profile = read_profile(workdir_copy / "profile.toml").with_environment(env_name)
    connector = str(profile.section("provider").get("connector", ""))
    session = Session(provider, env_name, workdir_copy, source, out_dir, profile)
    starter = SANDBOX_STARTERS.get(connector, _start_generic_sandbox)
    sandbox = starter(session, dict(sandbox_options or {}))
    session.sandbox = sandbox
    log.info("notebook session: %s (%s) in %s", provider, env_name, out_dir)
    return session


def _start_generic_sandbox(session: Session, options: dict[str, Any]) -> Any:
    """The generic simulator; its variables (and ``base_url_env``) go into the environment."""
    from scaler_workbench.sandbox import Sandbox

    sandbox = Sandbox(**options).start()
    variables = dict(sandbox.env())
    env = session.profile.env()
    if env.base_url_env and env.base_url_env not in variables:
        variables[env.base_url_env] = sandbox.url
    _export(session, variables)
    return sandbox


def _start_ecostruxure_sandbox(session: Session, options: dict[str, Any]) -> Any:
    """EcoStruxure's simulator on a FakeClock; the profile pointed at it (OAuth2 URLs too)."""
    from scaler_workbench.clock import FakeClock
    from scaler_workbench.sandbox.ecostruxure import EcoStruxureSandbox, profile_for

    clock = options.pop("clock", None) or FakeClock()
    sandbox = EcoStruxureSandbox(clock=clock, **options).start()
    _export(session, sandbox.env())
    token_file = str(session.out / "tokens" / f"{session.provider}.json")
    session.profile = profile_for(sandbox, session.profile, token_file=token_file)
    session.clock = clock
    return sandbox


#: Simulator per ``[provider] connector`` (the generic sandbox for any other profile); a
#: provider module with its own simulator registers its starter here.
SANDBOX_STARTERS: dict[str, Any] = {"ecostruxure": _start_ecostruxure_sandbox}


def _export(session: Session, variables: Mapping[str, str]) -> None:
    for key, value in variables.items():
        session._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value


# -- executing and rendering ---------------------------------------------------------------------
def execute_notebook(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    extra_cells: Sequence[str] = (),
    timeout: int = 600,
) -> Any:
    """Execute a notebook in a fresh kernel (its folder as working directory) and return it.

    Parameters
    ----------
    path : path-like
        The ``.ipynb`` file.
    out : path-like
        Passed to the notebook as ``WORKBENCH_OUT`` (its output folder).
    extra_cells : sequence of str
        Code appended after the notebook's own cells (tests read facts with them); their
        cells carry the tag ``probe``.
    timeout : int
        Per-cell timeout [s].

    Returns
    -------
    nbformat.NotebookNode
        The executed notebook with its outputs.
    """
    import nbformat
    from nbclient import NotebookClient

    p = Path(path)
    nb = nbformat.read(p, as_version=4)
    for source in extra_cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = ["probe"]
        nb.cells.append(cell)
    saved = {k: os.environ.get(k) for k in (OVERRIDES["out"], "MPLBACKEND")}
    os.environ[OVERRIDES["out"]] = str(Path(out).resolve())
    os.environ["MPLBACKEND"] = "Agg"
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(p.parent.resolve())}},
        )
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def render_html(nb: Any, target: str | os.PathLike[str]) -> Path:
    """Render an executed notebook to a standalone HTML page (probe cells left out).

    Widget views are dropped (they need the widgets' JavaScript from a CDN and a kernel, and
    show as empty space without them): each panel's static ``text/html`` snapshot (see
    :mod:`scaler_workbench.widgets`) is shown instead, so the page works offline.
    """
    import copy

    from nbconvert import HTMLExporter

    clean = copy.deepcopy(nb)
    clean.cells = [c for c in clean.cells if "probe" not in c.get("metadata", {}).get("tags", [])]
    # live widgets would need their JavaScript from a CDN (unpkg) and a kernel: the pages show
    # each panel's static snapshot instead, offline and without a kernel
    clean.metadata.pop("widgets", None)
    for cell in clean.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(_WIDGET_VIEW, None)
    body, _ = HTMLExporter().from_notebook_node(clean)
    t = Path(target)
    t.parent.mkdir(parents=True, exist_ok=True)
    t.write_text(body, encoding="utf-8")
    return t


def build_docs(
    notebooks: str | os.PathLike[str] = "notebooks",
    target: str | os.PathLike[str] = "docs/_build/notebooks",
    *,
    out: str | os.PathLike[str] = "out/docs",
) -> list[Path]:
    """Execute every notebook and render it to ``target/<name>.html`` (``make docs``).

    Returns
    -------
    list of Path
        The HTML pages written.
    """
    pages = []
    for path in sorted(Path(notebooks).glob("*.ipynb")):
        nb = execute_notebook(path, out=Path(out) / path.stem)
        pages.append(render_html(nb, Path(target) / f"{path.stem}.html"))
        print(f"{path.name} -> {pages[-1]}")
    return pages


if __name__ == "__main__":  # pragma: no cover - make docs
    import sys

    if sys.argv[1:] != ["docs"]:
        sys.exit("usage: python -m scaler_workbench.notebook docs")
    build_docs()
