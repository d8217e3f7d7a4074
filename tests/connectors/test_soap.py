"""SOAP resources and SOAP faults (issue 18 items 3 and 6).

The SOAP flavour of the sandbox (scaler_workbench/sandbox/soap.py) is onboarded by
tests/data/soap/profile.toml alone (two envelope files next to it, no Python): monthly totals
equal the flavour's ground truth under 429/503 faults and the service's own "Server.Busy"
faults; a bad token's ``Client.Authentication`` fault exits 3. Each fault mapping (auth, quota,
busy, anything else) is shown for SOAP 1.1 and 1.2, in a 500 and in a 200 answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _fakes import Reply, Request

from scaler_workbench import cli
from scaler_workbench.clock import FakeClock
from scaler_workbench.connectors import Client, fetch_resources
from scaler_workbench.connectors._soap import SOAP_11, SOAP_12, find_fault
from scaler_workbench.connectors.resources import Connector
from scaler_workbench.exceptions import (
    AuthError,
    ProfileError,
    ProviderUnavailableError,
    QuotaExhaustedError,
    RequestRejectedError,
)
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.store import StateStore
from scaler_workbench.sync import run_sync

from .conftest import fake_profile, flavour_truth, usage_months

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "tests" / "data" / "soap" / "profile.toml"
FLAVOUR = {"meters": 3, "start": "2024-01-01", "end": "2024-03-01"}
TINY = {"sites": 1, "meters_per_site": 1, "start": "2024-01-01", "end": "2024-01-03"}
NS = {"soap": SOAP_11, "m": "urn:sandbox:metering"}


@pytest.fixture
def soap_sandbox(make_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    def start(flavour_options: dict[str, Any] | None = None, **faults: Any) -> Sandbox:
        options = {**FLAVOUR, **(flavour_options or {})}
        sb = make_sandbox(flavour="soap", flavour_options=options, **TINY, **faults)
        for k, v in sb.env().items():
            monkeypatch.setenv(k, v)
        return sb

    return start


# -- the SOAP flavour onboarded by its profile alone ------------------------------------------
def test_soap_profile_sync_equals_ground_truth_under_429_503_and_busy_faults(
    soap_sandbox: Any, tmp_path: Path
) -> None:
    sb = soap_sandbox({"busy_every": 5}, every_nth_429=4, retry_after=2, every_nth_503=7)
    clock = FakeClock(datetime(2024, 3, 2, tzinfo=UTC))
    result = run_sync(read_profile(PROFILE), out=tmp_path, clock=clock, formats=("csv",))
    assert result.status == "success"
    truth = flavour_truth(sb)
    assert len(truth) == 6  # three meters x two months
    assert usage_months(tmp_path) == pytest.approx(truth, rel=1e-9)
    statuses = [r.status for r in sb.request_log]
    assert 429 in statuses and 503 in statuses and 500 in statuses  # all retried
    assert 2.0 in clock.sleeps  # Retry-After honoured
    sent: list[tuple[str, dict[str, str]]] = sb.flavour.requests  # type: ignore[attr-defined]
    readings = [p for op, p in sent if op == "GetReadings"]
    meters = {m["id"] for m in sb.flavour.meters}  # type: ignore[attr-defined]
    assert {p["MeterId"] for p in readings} == meters  # {parent.meter} filled per meter
    assert {(p["From"], p["To"]) for p in readings} >= {
        ("2024-01-01", "2024-02-01"),
        ("2024-02-01", "2024-03-01"),
    }  # {window.start}/{window.end} in the date format, end exclusive
    exported = pd.read_csv(tmp_path / "export" / "meters.csv")
    assert len(exported) == 3
    assert exported["description"].str.contains("&").all()  # "Main meter & feed n", unescaped


def test_soap_bad_token_fault_exits_3_naming_the_fault(
    soap_sandbox: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = soap_sandbox()
    monkeypatch.setenv("SANDBOX_TOKEN", "tok_not-the-token-000")
    code = cli.main(["sync", str(PROFILE), "--out", str(tmp_path), "--formats", "csv"])
    assert code == cli.EXIT_AUTH
    err = capsys.readouterr().err
    assert "Client.Authentication" in err and "Invalid security token" in err
    assert "Traceback" not in err and "tok_not-the-token-000" not in err
    assert [r.status for r in sb.request_log] == [500]  # a fault in a 500: not retried


def test_soap_12_request_carries_its_content_type_and_reads_12_answers(soap_sandbox: Any) -> None:
    sb = soap_sandbox()
    data = read_profile(PROFILE).data
    ns12 = {"soap": SOAP_12, "m": "urn:sandbox:metering"}
    for name in ("meters", "readings"):
        res = data["resources"][name]
        res["namespaces"] = ns12
        res["soap"]["version"] = "1.2"
        res["soap"]["envelope"] = (
            (PROFILE.parent / res["soap"]["envelope"]).read_text("utf-8").replace(SOAP_11, SOAP_12)
        )
    profile = Profile.from_dict(data, path=PROFILE)
    spec = Connector(profile, client=Client(profile)).resource("readings")
    assert spec.headers["Content-Type"] == (
        'application/soap+xml; charset=utf-8; action="urn:sandbox:metering/GetReadings"'
    )
    assert "SOAPAction" not in spec.headers
    out = fetch_resources(profile, since="2024-01-01", until="2024-03-01", clock=FakeClock())
    assert out["readings"].report.complete, out["readings"].report.summary()
    assert len(out["meters"].records) == 3 and len(out["readings"].records) == 3 * 60
    for (meter, month), v in flavour_truth(sb).items():
        got = sum(
            float(r["Value"])
            for r in out["readings"].records
            if r["_parent"]["meter"] == meter and r["Start"][:7] == month and "Value" in r
        )
        assert got == pytest.approx(v, rel=1e-12)


def test_an_unknown_meter_fault_in_a_200_is_a_failed_page_naming_the_fault(
    soap_sandbox: Any,
) -> None:
    soap_sandbox({"fault_status": 200})
    profile = read_profile(PROFILE)
    connector = Connector(profile, client=Client(profile, clock=FakeClock()))
    meters = connector.fetch_resource("meters").records
    parents = [*meters, {"@id": "PRM-nope"}]
    res = connector.fetch_resource(
        "readings", parent_records=parents, since="2024-01-01", until="2024-02-01"
    )
    assert not res.report.complete
    [failed] = res.report.failed_pages
    assert failed["parent"] == {"meter": "PRM-nope"} and failed["status"] == 200
    assert "RequestRejectedError" in failed["error"]
    assert "Client.UnknownMeter" in failed["error"] and "does not exist" in failed["error"]
    assert len(res.records) == 3 * 31  # the other meters' month is fetched


# -- request headers and escaping, over a fake service ----------------------------------------
def _envelope(version: str, body: str) -> str:
    ns = SOAP_11 if version == "1.1" else SOAP_12
    return f'<s:Envelope xmlns:s="{ns}"><s:Body>{body}</s:Body></s:Envelope>'


def _fault(version: str, code: str, text: str) -> str:
    if version == "1.1":
        body = f"<s:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></s:Fault>"
    else:
        top, _, sub = code.partition(".")
        top = {"soap:Client": "s:Sender", "soap:Server": "s:Receiver"}.get(top, top)
        body = (
            f"<s:Fault><s:Code><s:Value>{top}</s:Value><s:Subcode><s:Value>{sub}</s:Value>"
            f"</s:Subcode></s:Code><s:Reason><s:Text>{text}</s:Text></s:Reason></s:Fault>"
        )
    return _envelope(version, body)


def _soap_resource(version: str = "1.1", **soap: Any) -> dict[str, Any]:
    ns = SOAP_11 if version == "1.1" else SOAP_12
    return {
        "record_path": "s:Body/r",
        "namespaces": {"s": ns},
        "primary_key": "id",
        "soap": {
            "envelope": f'<s:Envelope xmlns:s="{ns}"><s:Body><Get>{{variables.site}}</Get>'
            "</s:Body></s:Envelope>",
            "action": "urn:x/Get",
            "version": version,
            **soap,
        },
    }


def test_a_soap_11_request_sends_soapaction_text_xml_and_escaped_values(serve: Any) -> None:
    server = serve(
        lambda req: Reply(200, _envelope("1.1", "<r><id>1</id></r>"), content_type="text/xml")
    )
    profile = fake_profile(
        server.url,
        resources={"x": _soap_resource()},
        variables={"site": "A&B <1>"},
    )
    out = fetch_resources(profile, clock=FakeClock())
    assert out["x"].records == [{"id": "1"}]
    [req] = server.requests
    assert req.method == "POST" and req.path == "/"
    assert req.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert req.headers["SOAPAction"] == '"urn:x/Get"'
    assert b"<Get>A&amp;B &lt;1&gt;</Get>" in req.body


# -- each fault mapping, SOAP 1.1 and 1.2, in a 500 and in a 200 ------------------------------
CASES = [
    # (code, text, expected error); "busy" is retried: ProviderUnavailableError at the end
    ("soap:Client.Authentication", "Invalid security token", AuthError),
    ("wsse:FailedAuthentication", "The security token could not be authenticated", AuthError),
    ("soap:Server.Quota", "Daily quota of 1000 calls exceeded", QuotaExhaustedError),
    ("soap:Server.Busy", "Server too busy, try again later", ProviderUnavailableError),
    ("soap:Client.InvalidSite", "site 'A' is not known", RequestRejectedError),
]


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("status", [500, 200])
@pytest.mark.parametrize(("code", "text", "error"), CASES, ids=[c[0] for c in CASES])
def test_each_soap_fault_maps_to_its_error(
    serve: Any, version: str, status: int, code: str, text: str, error: type
) -> None:
    server = serve(lambda req: Reply(status, _fault(version, code, text), content_type="text/xml"))
    resource = {**_soap_resource(version), "on_error": "raise"}
    profile = fake_profile(server.url, resources={"x": resource}, variables={"site": "A"})
    clock = FakeClock()
    with pytest.raises(error) as info:
        fetch_resources(profile, clock=clock)
    assert type(info.value) is error or error is ProviderUnavailableError
    assert text in info.value.message
    assert code.split(".")[-1] in info.value.message  # the fault code is named
    assert info.value.status == status
    retried = error is ProviderUnavailableError
    assert len(server.requests) == (4 if retried else 1)  # only "busy" is retried
    assert len(clock.sleeps) == (3 if retried else 0)


def test_a_busy_fault_is_retried_with_backoff_until_the_answer_comes(serve: Any) -> None:
    calls: list[int] = []

    def handler(req: Request) -> Reply:
        calls.append(1)
        if len(calls) < 3:
            return Reply(
                500, _fault("1.1", "soap:Server.Busy", "Server too busy"), content_type="text/xml"
            )
        return Reply(200, _envelope("1.1", "<r><id>7</id></r>"), content_type="text/xml")

    server = serve(handler)
    profile = fake_profile(
        server.url,
        resources={"x": _soap_resource()},
        variables={"site": "A"},
        client={"max_attempts": 4, "backoff_base": 1.0, "jitter": 0.0},
    )
    clock = FakeClock()
    out = fetch_resources(profile, clock=clock)
    assert out["x"].records == [{"id": "7"}] and out["x"].report.complete
    assert clock.sleeps == [1.0, 2.0] and len(server.requests) == 3


def test_fault_patterns_are_configurable(serve: Any) -> None:
    server = serve(
        lambda req: Reply(
            500, _fault("1.1", "soap:Client.LoginRefused", "no"), content_type="text/xml"
        )
    )
    res = {**_soap_resource(auth_fault=r"LoginRefused"), "on_error": "raise"}
    profile = fake_profile(server.url, resources={"x": res}, variables={"site": "A"})
    with pytest.raises(AuthError, match="LoginRefused"):
        fetch_resources(profile, clock=FakeClock())
    # busy_fault = "" turns the retry off: a busy fault is then a request error
    server2 = serve(
        lambda req: Reply(500, _fault("1.1", "soap:Server.Busy", "busy"), content_type="text/xml")
    )
    res2 = {**_soap_resource(busy_fault=""), "on_error": "raise"}
    profile2 = fake_profile(server2.url, resources={"x": res2}, variables={"site": "A"})
    with pytest.raises(RequestRejectedError, match=r"Server\.Busy"):
        fetch_resources(profile2, clock=FakeClock())
    assert len(server2.requests) == 1


def test_a_500_without_a_soap_fault_is_retried_as_any_5xx(serve: Any) -> None:
    server = serve(lambda req: Reply(500, "<html>oops</html>", content_type="text/html"))
    res = {**_soap_resource(), "on_error": "raise"}
    profile = fake_profile(server.url, resources={"x": res}, variables={"site": "A"})
    with pytest.raises(ProviderUnavailableError, match="after 4 attempts"):
        fetch_resources(profile, clock=FakeClock())
    assert len(server.requests) == 4


def test_find_fault_reads_11_and_12_and_ignores_other_documents() -> None:
    import defusedxml.ElementTree as et

    f11 = find_fault(et.fromstring(_fault("1.1", "soap:Client.X", "bad &amp; worse")))
    assert f11 is not None and f11.version == "1.1"
    assert f11.codes == ("soap:Client.X",) and f11.reason == "bad & worse"
    f12 = find_fault(et.fromstring(_fault("1.2", "soap:Client.Auth", "no")))
    assert f12 is not None and f12.version == "1.2" and f12.codes == ("s:Sender", "Auth")
    assert find_fault(et.fromstring(_envelope("1.1", "<r/>"))) is None
    assert find_fault(et.fromstring("<Fault/>")) is None
    assert find_fault({"Fault": 1}) is None


# -- profile errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("soap", "match", "key"),
    [
        ({"envelope": "nope.xml"}, r"nope\.xml' does not exist", "resources.x.soap.envelope"),
        ({"envelope": "<e/>", "version": "2.0"}, "'1.1' or '1.2'", "resources.x.soap.version"),
        ({"envelope": "<e/>", "auth_fault": "(("}, "bad resources.x.soap.auth_fault", None),
        ({"action": "a"}, "needs an envelope", "resources.x.soap.envelope"),
    ],
)
def test_soap_table_mistakes_are_profile_errors(
    tmp_path: Path, soap: dict[str, Any], match: str, key: str | None
) -> None:
    data = {
        "provider": {"name": "fake", "timezone": "UTC"},
        "environments": {"test": {"base_url": "http://127.0.0.1:9"}},
        "resources": {"x": {"soap": soap}},
    }
    profile = Profile.from_dict(data, path=tmp_path / "profile.toml")
    with pytest.raises(ProfileError, match=match) as info:
        Connector(profile, client=Client(profile)).resource("x")
    if key:
        assert info.value.key == key


def test_an_unknown_soap_key_is_refused_when_the_profile_is_read() -> None:
    data = {
        "provider": {"name": "fake", "timezone": "UTC"},
        "environments": {"test": {"base_url": "http://127.0.0.1:9"}},
        "resources": {"x": {"soap": {"envelop": "<e/>"}}},
    }
    with pytest.raises(ProfileError, match="did you mean 'envelope'"):
        Profile.from_dict(data)


def test_ns_constant_matches_the_profile() -> None:
    assert read_profile(PROFILE).resources["readings"]["namespaces"] == NS


def test_a_body_envelope_with_a_soap_table_gets_faults_mapped_and_its_own_headers(
    serve: Any,
) -> None:
    server = serve(
        lambda req: Reply(
            500, _fault("1.1", "soap:Client.Authentication", "expired"), content_type="text/xml"
        )
    )
    resource = {
        "body": _envelope("1.1", "<Get>{variables.site}</Get>"),
        "headers": {"Content-Type": "text/xml; charset=iso-8859-1", "SOAPAction": "urn:own"},
        "soap": {"action": "urn:x/Get"},
        "record_path": "s:Body/r",
        "namespaces": {"s": SOAP_11},
    }
    profile = fake_profile(server.url, resources={"x": resource}, variables={"site": "A"})
    with pytest.raises(AuthError, match=r"Client\.Authentication"):
        fetch_resources(profile, clock=FakeClock())
    [req] = server.requests
    assert req.headers["Content-Type"] == "text/xml; charset=iso-8859-1"  # the profile's win
    assert req.headers["SOAPAction"] == "urn:own"
    assert b"<Get>A</Get>" in req.body


def test_soap_daily_quota_exits_4_and_the_next_run_resumes(
    soap_sandbox: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A quota answer (429 without Retry-After) stops the SOAP sync with exit 4, never retried;
    what was fetched is kept and the next run (a new day) completes to ground truth."""
    sb = soap_sandbox(quota_after=3)
    args = ["sync", str(PROFILE), "--out", str(tmp_path), "--formats", "csv"]
    assert cli.main(args) == cli.EXIT_QUOTA
    assert [r.status for r in sb.request_log].count(429) == 1  # stopped, not retried
    assert "quota" in capsys.readouterr().err
    sb.clear_faults()
    sb.clear_log()
    assert cli.main(args) == cli.EXIT_OK
    assert usage_months(tmp_path) == pytest.approx(flavour_truth(sb), rel=1e-9)
    with StateStore(tmp_path / "state" / "soap_metering.sqlite") as store:
        assert store.runs()["status"].tolist() == ["success", "quota_exhausted"]
