"""The workbench's errors: one tree, each error saying what to do next.

Catch as broadly or as narrowly as you need::

    WorkbenchError
    ├── ProfileError (ValueError)            a profile TOML is malformed: ``key`` path and the fix
    │   ├── CredentialError (KeyError)       an environment variable named by the profile is unset
    │   └── FilterError                      a ``where`` / ``skip`` / ``parent_filter`` condition is malformed
    │   └── TimezoneMismatchError            a provider-stated site zone disagrees with the profile
    ├── ConnectorError                       anything between us and the provider
    │   ├── TransportError (ConnectionError) DNS, refused connection, timeout: provider unreachable
    │   ├── HTTPStatusError                  a bad status after retries: ``status``, redacted ``url``
    │   │   ├── AuthError (PermissionError)  401/403, or a token endpoint said no
    │   │   ├── RequestRejectedError (ValueError)   other 4xx: our request is wrong
    │   │   │   ├── RangeTooLargeError       the provider refused the date span
    │   │   │   └── ResourceNotFoundError    404: a wrong resource path or base URL
    │   │   └── ProviderUnavailableError     5xx (or 429) still failing after every attempt
    │   ├── QuotaExhaustedError              the provider's daily quota is spent: resume later
    │   ├── PaginationError (RuntimeError)   a loop (same cursor/URL twice) or a bad paginator setup
    │   └── ResponseParseError (ValueError)  a body that is not the JSON/XML the profile expects
    │       └── CsvFormatError               a CSV (or zipped CSV) answer that is not whole, regular CSV
    ├── MappingError (ValueError)            mapping workbook/table problems: ``sheet``, ``row``, ``column``
    ├── SchemaError (ValueError)             a frame lacks required columns or has wrong dtypes
    ├── UnitError (ValueError)               unknown/ambiguous unit: ``unit``, ``meter``, ``column``
    ├── UsageError (ValueError)              impossible periods or readings that cannot be processed
    ├── ValidationSetupError (RuntimeError)  a validation suite could not be built or run
    ├── StateError (RuntimeError)            the SQLite state is locked, corrupt or too new
    │   └── SyncLockedError                  another sync of this profile (state) is running
    ├── SyncError (RuntimeError)             a sync run could not finish (cause chained)
    ├── ExportError (OSError)                export files could not be written
    └── SandboxError (RuntimeError)          the local provider simulator failed to start

Every error takes its context by keyword (``provider=``, ``status=``, ``url=``, ``sheet=``, ...),
exposes each as an attribute, and carries a ``hint``: the next thing to try. Messages are passed
through :func:`scaler_workbench._secrets.redact` so a secret can never leak through ``str(exc)``;
URLs are stored with secret query parameters removed.
"""

from __future__ import annotations

from typing import Any

from scaler_workbench._secrets import redact, redact_url

__all__ = [
    "AuthError",
    "ConnectorError",
    "CredentialError",
    "CsvFormatError",
    "ExportError",
    "FilterError",
    "HTTPStatusError",
    "MappingError",
    "PaginationError",
    "ProfileError",
    "ProviderUnavailableError",
    "QuotaExhaustedError",
    "RangeTooLargeError",
    "RequestRejectedError",
    "ResourceNotFoundError",
    "ResponseParseError",
    "SandboxError",
    "SchemaError",
    "StateError",
    "SyncError",
    "SyncLockedError",
    "TimezoneMismatchError",
    "TransportError",
    "UnitError",
    "UsageError",
    "ValidationSetupError",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Root of every error the workbench raises on purpose.

    Parameters
    ----------
    message : str
        What went wrong, in the analyst's terms.
    hint : str, optional
        What to do next. Appended to ``str(exc)``.
    **context
        Structured context (``provider``, ``status``, ``url``, ``sheet``, ``row``, ``column``,
        ``unit``, ``meter``, ``key``, ...), each exposed as an attribute. ``url`` is stored
        with secrets removed.
    """

    default_hint: str = ""

    def __init__(self, message: str, *, hint: str = "", **context: Any) -> None:
        if "url" in context and context["url"] is not None:
            context["url"] = redact_url(str(context["url"]))
        self.message = redact(str(message))
        self.hint = redact(hint or self.default_hint)
        self.context: dict[str, Any] = context
        for key, value in context.items():
            setattr(self, key, value)
        super().__init__(self.message)

    def __str__(self) -> str:
        text = self.message
        if self.hint:
            text = f"{text}\n  -> {self.hint}"
        return redact(text)

    def __repr__(self) -> str:
        parts = [repr(self.message)]
        parts += [f"{k}={v!r}" for k, v in self.context.items()]
        return redact(f"{type(self).__name__}({', '.join(parts)})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.hint, self.context))


def _rebuild(
    cls: type[WorkbenchError], message: str, hint: str, context: dict[str, Any]
) -> WorkbenchError:
    return cls(message, hint=hint, **context)


class ProfileError(WorkbenchError, ValueError):
    """A provider profile is malformed. ``key`` is the dotted path of the offending key."""

    default_hint = "Fix the key in the profile TOML; see docs/profiles.md for every key."


class CredentialError(ProfileError, KeyError):
    """An environment variable that the profile names is not set. ``variable`` names it."""

    default_hint = (
        "Export the variable in the shell (or the scheduler's environment) that runs the "
        "workbench; never put it in the profile."
    )

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return WorkbenchError.__str__(self)


class FilterError(ProfileError):
    """A record filter (``where``, ``skip``, ``parent_filter``, ``exclude_meters``) is malformed:
    an unknown operator, a list operator without a list, a bad regular expression. ``key`` names
    the condition."""

    default_hint = "See docs/mapping.md, 'Record filters', for the operators and their values."


class TimezoneMismatchError(ProfileError):
    """The provider states a zone for an asset that disagrees with the zone the profile gives it.

    Raised before any local-time aggregation (months would be cut in the wrong zone).
    ``asset`` (one of them, when several), ``zone`` (what the profile gives), ``stated`` (what
    the provider says) and ``assets`` (every asset that disagrees) say where.
    """

    default_hint = (
        "Set the asset's zone from the provider's field ([mapping.assets.fields] timezone = "
        "'<the field>'), or correct [provider] timezone / the constant zone of the sites."
    )


class ConnectorError(WorkbenchError):
    """Anything that went wrong talking to the provider."""


class TransportError(ConnectorError, ConnectionError):
    """The provider could not be reached (DNS, refused connection, timeout)."""

    default_hint = "Check the base URL and your network; the provider may be down. Re-run later."


class HTTPStatusError(ConnectorError):
    """The provider answered with a bad status. ``status``, ``url`` (redacted), ``body`` (truncated)."""


class AuthError(HTTPStatusError, PermissionError):
    """Authentication or authorisation failed (401/403, or the token endpoint refused)."""

    default_hint = (
        "Check the credentials' environment variables and the auth section of the profile."
    )


class RequestRejectedError(HTTPStatusError, ValueError):
    """The provider rejected our request (4xx other than auth and rate limits)."""

    default_hint = "Compare the request parameters with the provider's API documentation."


class RangeTooLargeError(RequestRejectedError):
    """The provider refused the requested date span. Lower ``date_range.max_days`` or let it learn."""

    default_hint = "Set a smaller date_range.chunk or max_days for this resource in the profile."


class ResourceNotFoundError(RequestRejectedError):
    """The provider answered 404 Not Found: the resource path (or the base URL) is wrong."""

    default_hint = (
        "Check the resource's path in the profile and the environment's base URL against the "
        "provider's API documentation."
    )


class ProviderUnavailableError(HTTPStatusError):
    """5xx (or 429) responses persisted through every retry attempt."""

    default_hint = "The provider is failing; re-run later or raise client.max_attempts."


class QuotaExhaustedError(ConnectorError):
    """The provider's quota is spent. The sync stops cleanly and resumes on the next run."""

    default_hint = "Run the sync again after the quota resets; completed work is kept."


class PaginationError(ConnectorError, RuntimeError):
    """Pagination misbehaved: the same cursor or URL came back twice, or the setup is impossible."""

    default_hint = "Run probe_pagination() on the resource and set the paginator the probe reports."


class ResponseParseError(ConnectorError, ValueError):
    """A response body could not be decoded or the record path does not exist in it."""

    default_hint = "Inspect the raw response (client.last_response) and fix format/record_path."


class CsvFormatError(ResponseParseError):
    """A CSV export (or a zip of them) is truncated, irregular, mis-encoded or not a zip."""

    default_hint = "Check the resource's csv options (delimiter, encoding, header) and the export."


class MappingError(WorkbenchError, ValueError):
    """The mapping (workbook or profile section) is incomplete or inconsistent."""

    default_hint = "Fix the named cell in the mapping workbook and read it back."


class SchemaError(WorkbenchError, ValueError):
    """A frame does not match the Scaler schema: ``table`` and ``column`` name the problem."""


class UnitError(WorkbenchError, ValueError):
    """A unit is unknown or ambiguous: ``unit``, ``meter`` and ``column`` say where."""

    default_hint = (
        "Map the label in the profile's [units.aliases] table (e.g. 'therms' = 'therm', "
        "100,000 Btu = 29.3071 kWh, or 'US_therm', 29.3001 kWh: ask the provider)."
    )


class UsageError(WorkbenchError, ValueError):
    """Usage or readings that cannot be processed as given (e.g. end before start everywhere)."""


class ValidationSetupError(WorkbenchError, RuntimeError):
    """A validation suite could not be built or run (not a data failure: those are quarantined)."""


class StateError(WorkbenchError, RuntimeError):
    """The SQLite state database is locked, corrupt or from a newer version."""

    default_hint = "Make sure no other sync is running; if the file is corrupt, move it aside."


class SyncLockedError(StateError):
    """Another sync (or export) of the same state is running: this one did not start."""

    default_hint = (
        "Wait for the running sync to finish (a lock left by a killed process is taken over "
        "automatically)."
    )


class SyncError(WorkbenchError, RuntimeError):
    """A sync run could not finish. The cause is chained; state was rolled back."""


class ExportError(WorkbenchError, OSError):
    """Export files could not be written."""

    default_hint = "Check the output directory exists and is writable."


class SandboxError(WorkbenchError, RuntimeError):
    """The local provider simulator failed to start or stopped unexpectedly."""
