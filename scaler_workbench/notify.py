"""Tell the client team when a sync did not succeed: ``[notify]`` posts the run summary.

A profile may name a webhook (Slack, Teams, a ticketing system, any URL that takes a JSON
``POST``)::

    [notify]
    url_env = "SCALER_WEBHOOK_URL"   # the environment variable holding the webhook URL
    on = ["partial", "failed"]       # which run statuses post (default)
    timeout = 10                     # [s] per attempt (default 10)

At the end of :func:`~scaler_workbench.sync.run_sync` (:func:`notify_run`), a run whose status
is in ``on`` posts one JSON document: ``provider``, ``environment``, ``status``, ``run_id``,
``exit_code``, ``error`` (type, message, hint, for a failed run) and ``summary`` (the run
summary, as in ``run_summary.json``). The text is passed through
:func:`~scaler_workbench._secrets.redact`, so no registered secret (credentials, the webhook
URL itself) is sent.

The webhook URL is a secret (it usually carries a token): it only ever comes from the
environment, is registered for redaction when read, and a profile holding a literal ``url``
is refused. A failing webhook (an error status, a refused connection, a timeout) or an unset
variable never changes the sync's result: it is logged as a warning naming only the host.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scaler_workbench._secrets import get_logger, redact, register_secret
from scaler_workbench.exceptions import ProfileError, SyncLockedError

if TYPE_CHECKING:  # pragma: no cover
    from scaler_workbench.profile import Profile

__all__ = [
    "NOTIFY_KEYS",
    "NOTIFY_STATUSES",
    "NotifyConfig",
    "notify_on_failure",
    "notify_run",
    "read_notify",
]

log = get_logger(__name__)

#: The keys ``[notify]`` takes.
NOTIFY_KEYS = ("url_env", "on", "timeout")
#: Run statuses ``on`` may name: a run's final status, or ``failed`` (the sync raised).
NOTIFY_STATUSES = ("success", "partial", "quota_exhausted", "failed")
_DEFAULT_ON = ("partial", "failed")
_DEFAULT_TIMEOUT = 10.0  # [s]
_USER_AGENT = "scaler-workbench-notify"


@dataclass(frozen=True)
class NotifyConfig:
    """A profile's ``[notify]``.

    Attributes
    ----------
    url_env : str
        The environment variable that holds the webhook URL.
    on : tuple of str
        Statuses that post (from :data:`NOTIFY_STATUSES`).
    timeout : float
        Seconds to wait for the webhook [s].
    """

    url_env: str
    on: tuple[str, ...] = _DEFAULT_ON
    timeout: float = _DEFAULT_TIMEOUT


def read_notify(profile: Profile) -> NotifyConfig | None:
    """The profile's ``[notify]``, checked; None when the profile has none.

    Parameters
    ----------
    profile : Profile
        The provider profile.

    Returns
    -------
    NotifyConfig or None

    Raises
    ------
    ProfileError
        An unknown key, a literal URL, ``url_env`` missing or not a variable name, ``on``
        naming an unknown status, or a timeout that is not a positive number of seconds.
    """
    section = profile.section("notify")
    if not section:
        return None
    unknown = sorted(k for k in section if k not in NOTIFY_KEYS)
    if unknown:
        literal = [k for k in unknown if k in ("url", "webhook", "webhook_url")]
        raise ProfileError(
            f"[notify] has unknown key(s) {unknown}"
            + (": the webhook URL is a secret and never sits in a profile" if literal else ""),
            key=f"notify.{unknown[0]}",
            provider=profile.name,
            hint='Put the URL in an environment variable and write url_env = "SCALER_WEBHOOK_URL"; '
            f"[notify] takes {', '.join(NOTIFY_KEYS)}.",
        )
    url_env = section.get("url_env")
    if not isinstance(url_env, str) or not url_env.replace("_", "").isalnum():
        raise ProfileError(
            f"notify.url_env must name an environment variable, got {url_env!r}",
            key="notify.url_env",
            provider=profile.name,
            hint='Write url_env = "SCALER_WEBHOOK_URL" and set that variable to the webhook URL.',
        )
    on = section.get("on", list(_DEFAULT_ON))
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not all(isinstance(s, str) for s in on):
        raise ProfileError(
            "notify.on must be a list of statuses", key="notify.on", provider=profile.name
        )
    bad = [s for s in on if s not in NOTIFY_STATUSES]
    if bad:
        raise ProfileError(
            f"notify.on names unknown status(es) {bad}",
            key="notify.on",
            provider=profile.name,
            hint=f"Use any of {', '.join(NOTIFY_STATUSES)}.",
        )
    timeout = section.get("timeout", _DEFAULT_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ProfileError(
            f"notify.timeout must be a positive number of seconds, got {timeout!r}",
            key="notify.timeout",
            provider=profile.name,
        )
    return NotifyConfig(url_env=url_env, on=tuple(on), timeout=float(timeout))


def _payload(
    profile: Profile, status: str, result: Any, error: BaseException | None
) -> dict[str, Any]:
    summary = dict(getattr(result, "summary", None) or {})
    payload: dict[str, Any] = {
        "provider": profile.name,
        "environment": profile.environment,
        "status": status,
        "run_id": getattr(result, "run_id", None),
        "exit_code": getattr(result, "exit_code", None),
        "summary": summary,
    }
    if error is not None:
        payload["error"] = {
            "type": type(error).__name__,
            "message": str(getattr(error, "message", None) or error),
            "hint": str(getattr(error, "hint", "") or ""),
        }
        payload["exit_code"] = None
    return payload


def notify_run(
    profile: Profile,
    *,
    status: str,
    result: Any = None,
    error: BaseException | None = None,
    config: NotifyConfig | None = None,
) -> bool:
    """Post the run summary to the profile's webhook when ``status`` is one it asks for.

    Never raises for the webhook's sake: a missing variable, an error status, a refused
    connection or a timeout is logged as a warning and the sync's result stands.

    Parameters
    ----------
    profile : Profile
        The provider profile (its ``[notify]``).
    status : str
        The run's status (``success``, ``partial``, ``quota_exhausted``) or ``failed``.
    result : SyncResult, optional
        The run's result (``run_id``, ``exit_code``, ``summary``).
    error : BaseException, optional
        Why a failed run failed.
    config : NotifyConfig, optional
        ``read_notify(profile)``, when already read.

    Returns
    -------
    bool
        True when the webhook accepted the post (a 2xx answer).
    """
    config = config if config is not None else read_notify(profile)
    if config is None or status not in config.on:
        return False
    try:
        return _post(profile, config, status, result, error)
    except Exception as exc:  # a notification never changes the sync's result
        log.warning(
            "notify: could not report the %s run (%s); the run's result stands",
            status,
            type(exc).__name__,
        )
        return False


@contextlib.contextmanager
def notify_on_failure(profile: Profile, config: NotifyConfig | None) -> Iterator[None]:
    """Post ``failed`` (with the error) when the ``with`` block raises, then re-raise.

    A sync refused because another one holds the lock (:class:`SyncLockedError`) did not run
    and is not reported; neither is Ctrl-C.

    Parameters
    ----------
    profile : Profile
        The provider profile.
    config : NotifyConfig or None
        ``read_notify(profile)``; None: nothing is posted.
    """
    try:
        yield
    except SyncLockedError:
        raise
    except Exception as exc:
        if config is not None:
            notify_run(profile, status="failed", error=exc, config=config)
        raise


def _post(
    profile: Profile,
    config: NotifyConfig,
    status: str,
    result: Any,
    error: BaseException | None,
) -> bool:
    import os

    import requests

    url = os.environ.get(config.url_env, "")
    if not url:
        log.warning("notify: %s is not set, so the %s run was not reported", config.url_env, status)
        return False
    register_secret(url)
    parts = urlsplit(url)
    if parts.path and len(parts.path) > 1:
        register_secret(parts.path + (f"?{parts.query}" if parts.query else ""))
    if parts.query:
        register_secret(parts.query)
    where = parts.hostname or "?"
    body = redact(
        json.dumps(
            _payload(profile, status, result, error),
            sort_keys=True,
            default=str,
            allow_nan=False,
        )
    )
    try:
        reply = requests.post(
            url,
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT},
            timeout=config.timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        log.warning(
            "notify: the webhook at %s could not be reached (%s); the run's result stands",
            where,
            type(exc).__name__,
        )
        return False
    if not 200 <= reply.status_code < 300:
        log.warning(
            "notify: the webhook at %s answered HTTP %d; the run's result stands",
            where,
            reply.status_code,
        )
        return False
    log.info("notify: reported the %s run to the webhook at %s", status, where)
    return True
