"""The error tree: builtin parents, structured context, hints, pickling, no secrets."""

from __future__ import annotations

import inspect
import pickle

import pytest

from scaler_workbench import exceptions as exc_mod
from scaler_workbench._secrets import Secret
from scaler_workbench.exceptions import (
    AuthError,
    CredentialError,
    HTTPStatusError,
    ProfileError,
    RangeTooLargeError,
    RequestRejectedError,
    UnitError,
    WorkbenchError,
)

ALL_ERRORS = [
    obj
    for _, obj in inspect.getmembers(exc_mod, inspect.isclass)
    if issubclass(obj, WorkbenchError)
]


def test_every_error_is_in_the_docstring_tree() -> None:
    doc = exc_mod.__doc__ or ""
    for cls in ALL_ERRORS:
        assert cls.__name__ in doc, f"{cls.__name__} is not drawn in exceptions.py's docstring"


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_context(cls: type[WorkbenchError]) -> None:
    err = cls("something failed", hint="do this", provider="acme", status=418)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    assert str(clone) == str(err)
    assert clone.provider == "acme"
    assert clone.status == 418


def test_concrete_errors_inherit_the_builtin_they_resemble() -> None:
    assert issubclass(UnitError, ValueError)
    assert issubclass(ProfileError, ValueError)
    assert issubclass(CredentialError, KeyError)
    assert issubclass(AuthError, PermissionError)
    assert issubclass(AuthError, HTTPStatusError)
    assert issubclass(RangeTooLargeError, RequestRejectedError)


def test_hint_is_shown_after_the_message() -> None:
    err = UnitError("unknown unit 'thm'", unit="thm", meter="M1")
    text = str(err)
    assert text.startswith("unknown unit 'thm'")
    assert "->" in text and "aliases" in text  # default hint says what to do
    assert err.unit == "thm" and err.meter == "M1"


def test_url_context_is_stored_redacted() -> None:
    err = AuthError(
        "401 from provider",
        status=401,
        url="https://user:pw@api.example.com/v1/sites?api_key=abcd1234&page=2",
    )
    assert "abcd1234" not in err.url and "pw@" not in err.url
    assert "page=2" in err.url


def test_registered_secret_never_appears_in_message_or_repr() -> None:
    secret = Secret("s3cr3t-value-xyz", source="TEST_SECRET")
    err = WorkbenchError(f"token {secret.get()} was refused", hint=f"retry {secret.get()}")
    assert "s3cr3t-value-xyz" not in str(err)
    assert "s3cr3t-value-xyz" not in repr(err)
    assert "***" in str(err)


def test_credential_error_str_is_not_quoted_like_keyerror() -> None:
    err = CredentialError("environment variable 'X' is not set", variable="X")
    assert str(err).startswith("environment variable")
