"""Secret registry, masking in text, URLs and logs."""

from __future__ import annotations

import logging

import pytest

from scaler_workbench._secrets import (
    Secret,
    get_logger,
    redact,
    redact_url,
    secret_from_env,
)
from scaler_workbench.exceptions import CredentialError


def test_secret_repr_and_str_hide_the_value() -> None:
    s = Secret("hunter2-long-value", source="MY_VAR")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "hunter2" not in f"{s}"
    assert "MY_VAR" in repr(s)
    assert s.get() == "hunter2-long-value"


def test_secret_from_env_registers_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_KEY", "env-secret-98765")
    s = secret_from_env("WB_TEST_KEY", key="auth.key_env")
    assert s is not None and s.get() == "env-secret-98765"
    assert redact("header: env-secret-98765") == "header: ***"


def test_missing_variable_names_the_variable_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WB_NOT_SET", raising=False)
    with pytest.raises(CredentialError) as info:
        secret_from_env("WB_NOT_SET", key="auth.password_env")
    assert info.value.variable == "WB_NOT_SET"
    assert "auth.password_env" in str(info.value)
    assert secret_from_env("WB_NOT_SET", required=False) is None


@pytest.mark.parametrize(
    ("url", "hidden", "kept"),
    [
        ("https://a.example/x?api_key=K123456&page=2", "K123456", "page=2"),
        ("https://a.example/x?access_token=T98765", "T98765", "a.example"),
        ("https://bob:pa55word@a.example/x", "pa55word", "a.example/x"),
        ("https://a.example/x?client_secret=CS-1234&limit=5", "CS-1234", "limit=5"),
    ],
)
def test_redact_url(url: str, hidden: str, kept: str) -> None:
    out = redact_url(url)
    assert hidden not in out
    assert kept in out


def test_redact_url_with_provider_specific_param_name() -> None:
    out = redact_url("https://a.example/x?subscription-key=abcdef12", {"subscription-key"})
    assert "abcdef12" not in out


def test_logger_masks_registered_secrets(caplog: pytest.LogCaptureFixture) -> None:
    Secret("log-secret-24680")
    logger = get_logger("scaler_workbench.tests.secrets")
    with caplog.at_level(logging.INFO, logger="scaler_workbench.tests.secrets"):
        logger.info("sending %s to the provider", "log-secret-24680")
    assert "log-secret-24680" not in caplog.text
    assert "***" in caplog.text


def test_short_values_are_not_registered() -> None:
    Secret("ab")
    assert redact("ab cd") == "ab cd"


def test_every_encoding_is_masked_in_text_urls_and_any_loggers_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import base64
    import json
    from urllib.parse import quote, quote_plus

    from scaler_workbench._secrets import register_basic_pair
    from scaler_workbench.exceptions import TransportError

    secret = Secret('Enc0d+ed/Val=&x%41"q')
    pair = register_basic_pair("ann", secret.get())
    forms = {
        "raw": secret.get(),
        "quote": quote(secret.get(), safe=""),
        "quote_slash": quote(secret.get()),
        "quote_plus": quote_plus(secret.get()),
        "json": json.dumps(secret.get())[1:-1],
        "basic": base64.b64encode(f"ann:{secret.get()}".encode()).decode(),
        "double": quote(quote(secret.get(), safe=""), safe=""),
    }
    assert pair == forms["basic"]
    for name, form in forms.items():
        assert form not in redact(f"before {form} after"), name
    url = f"https://api.example/x?acct={quote_plus(secret.get())}&from=2024-01-01&to=2024-02-01"
    masked = redact_url(url)
    assert "Enc0d" not in masked and "from=2024-01-01" in masked and "to=2024-02-01" in masked
    exc = TransportError(f"ConnectionError talking to {url}", url=url)
    assert "Enc0d" not in str(exc) and "Enc0d" not in repr(exc)
    with caplog.at_level(logging.DEBUG):
        for logger in ("urllib3.connectionpool", "some.library", ""):
            for form in forms.values():
                logging.getLogger(logger).debug("GET /x?acct=%s HTTP/1.1", form)
        try:
            raise ValueError(f"boom {forms['quote_plus']}")
        except ValueError:
            logging.getLogger("another.library").exception("failed with %s", forms["json"])
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "GET /x?acct=***" in caplog.text and "boom" in text
    for name, form in forms.items():
        assert form not in text, name
