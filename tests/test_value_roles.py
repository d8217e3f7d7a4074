"""Value roles (issue 15 item 1) and split_sign (item 15): where a usage source's value goes.

A source's ``role`` sends its value to ``consumption`` (default), ``redelivery`` or
``production`` of the meter it names; meters carry an optional ``direction`` (exported in the
meter's metadata JSON, Scaler's meter format has no such field); ``split_sign`` splits a signed
net series per interval, before aggregation. The Green Button reverse-flow switch is tested in
tests/providers/test_greenbutton.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from scaler_workbench.clock import FakeClock
from scaler_workbench.exceptions import MappingError, ProfileError
from scaler_workbench.export import to_scaler_files
from scaler_workbench.pipeline import run_pipeline
from scaler_workbench.profile import Profile, read_profile
from scaler_workbench.sandbox import Sandbox
from scaler_workbench.sync import run_sync
from scaler_workbench.validation import validate_tables

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_PROFILE = ROOT / "mappings" / "sandbox" / "profile.toml"
ZONE = "Europe/London"
METERS = {
    "resource": "meters",
    "fields": {
        "meter_id": "id",
        "asset_id": {"const": "S1"},
        "meter_type": {"const": "Energy"},
        "raw_unit": "unit",
        "direction": "direction",
    },
}
ASSETS = {"derive_from": "meters", "fields": {"asset_id": {"const": "S1"}, "name": "site"}}


def _profile(usage: dict[str, Any], *, meters: dict[str, Any] | None = None) -> Profile:
    return Profile.from_dict(
        {
            "provider": {"name": "roles", "timezone": ZONE},
            "environments": {"x": {"base_url": "http://127.0.0.1"}},
            "mapping": {"assets": ASSETS, "meters": meters or METERS, "usage": usage},
        }
    )


def _hourly(meter: str, values: list[float | None], first: str = "2024-03-01T00:00Z") -> list:
    t0 = pd.Timestamp(first)
    return [
        {
            "m": meter,
            "s": (t0 + pd.Timedelta(hours=i)).isoformat(),
            "e": (t0 + pd.Timedelta(hours=i + 1)).isoformat(),
            "v": v,
        }
        for i, v in enumerate(values)
    ]


def _source(resource: str, **opts: Any) -> dict[str, Any]:
    value = opts.pop("value_field", "consumption")
    return {
        "resource": resource,
        "kind": "intervals",
        "aggregate": opts.pop("aggregate", "month"),
        "fields": {"meter_id": "m", "start": "s", "end": "e", value: "v"},
        **opts,
    }


def _meters() -> list[dict[str, Any]]:
    return [
        {"id": "IMP", "site": "S1", "unit": "kWh", "direction": "import"},
        {"id": "EXP", "site": "S1", "unit": "Wh", "direction": "export"},
        {"id": "PV", "site": "S1", "unit": "kWh", "direction": "production"},
        {"id": "GAS", "site": "S1", "unit": "kWh", "direction": None},
    ]


def _accounted(raw: dict[str, list[Any]], accepted: pd.DataFrame, quarantined: pd.DataFrame):
    """Interval records in = intervals summed into accepted rows + usage records set aside."""
    n_in = sum(len(raw[r]) for r in raw if r != "meters")
    q = quarantined[(quarantined["table"] == "usage") & (quarantined["severity"] == "error")]
    return n_in, int(accepted["n_intervals"].sum()) + len(q)


def test_roles_send_each_source_to_its_column_through_run_pipeline() -> None:
    raw = {
        "meters": _meters(),
        "imports": _hourly("IMP", [1.0, 2.0, 3.0]) + _hourly("GAS", [5.0, 5.0]),
        "exports": _hourly("EXP", [500.0, None, 1500.0]),  # Wh; one interval without data
        "solar": _hourly("PV", [0.25, 0.5, 0.75, 1.0]),
    }
    profile = _profile(
        {
            "imports": _source("imports"),
            "exports": _source("exports", role="redelivery", value_field="redelivery"),
            "solar": _source("solar", role="production"),  # value mapped as consumption
        }
    )
    tables = run_pipeline(profile, raw)
    result = validate_tables(tables, profile)
    usage = result.accepted.usage.set_index("meter_id")
    assert set(usage.index) == {"IMP", "EXP", "PV", "GAS"}
    assert usage.loc["IMP", "consumption"] == pytest.approx(6.0)
    assert np.isnan(usage.loc["IMP", "production"]) and np.isnan(usage.loc["IMP", "redelivery"])
    # redelivery in the meter's canonical unit (Wh -> kWh); the export meter consumed nothing
    assert usage.loc["EXP", "redelivery"] == pytest.approx(2.0)
    assert usage.loc["EXP", "consumption"] == 0.0
    assert usage.loc["EXP", "raw_value"] == pytest.approx(2000.0)  # lineage: as reported
    assert usage.loc["EXP", "null_intervals"] == 1
    # solar generation is production of its meter, never consumption
    assert usage.loc["PV", "production"] == pytest.approx(2.5)
    assert usage.loc["PV", "consumption"] == 0.0
    assert usage.loc["GAS", "consumption"] == pytest.approx(10.0)
    q = result.quarantined
    assert set(q.loc[q["severity"] == "error", "rule"]) == set()
    assert set(q["rule"]) <= {"no_data"}
    n_in, n_out = _accounted(raw, result.accepted.usage, q)
    assert n_in == n_out == 12


def test_direction_is_a_meter_column_exported_in_the_metadata(tmp_path: Path) -> None:
    raw = {"meters": _meters(), "imports": _hourly("IMP", [1.0]) + _hourly("GAS", [1.0])}
    meters = json.loads(json.dumps(METERS))
    meters["fields"]["metadata"] = "extra"
    raw["meters"][0]["extra"] = {"mpan": "1200000000001"}
    profile = _profile({"imports": _source("imports")}, meters=meters)
    tables = run_pipeline(profile, raw)
    got = dict(zip(tables.meters["meter_id"], tables.meters["direction"], strict=True))
    assert got["IMP"] == "import" and got["EXP"] == "export" and got["PV"] == "production"
    assert pd.isna(got["GAS"])
    result = validate_tables(tables, profile)
    to_scaler_files(result.accepted, tmp_path, formats=("csv",), default_timezone=ZONE)
    exported = pd.read_csv(tmp_path / "meters.csv", dtype=str, keep_default_na=False)
    # Scaler's meter fields only: no direction column, the direction rides in metadata
    assert "direction" not in exported.columns
    meta = dict(zip(exported["external_id"], exported["metadata"], strict=True))
    assert json.loads(meta["IMP"]) == {"mpan": "1200000000001", "direction": "import"}
    assert json.loads(meta["EXP"]) == {"direction": "export"}
    assert meta["GAS"] == ""


def test_split_sign_splits_a_net_series_per_interval_before_aggregation() -> None:
    # a net-metered meter: hourly kWh, importing at night, exporting at noon; day 1 nets to
    # a negative total (-1.5), day 2 to +4.0
    day1 = [1.0, 1.0, -2.0, -3.0, 0.5, 0.0, 1.0]
    day2 = [2.0, -1.0, 3.0]
    raw = {
        "meters": _meters(),
        "net": _hourly("IMP", day1, "2024-03-01T08:00Z")
        + _hourly("IMP", day2, "2024-03-02T08:00Z"),
    }
    split = _profile({"net": _source("net", aggregate="day", split_sign=True)})
    result = validate_tables(run_pipeline(split, raw), split)
    days = result.accepted.usage.sort_values("start")
    assert list(days["consumption"]) == pytest.approx([3.5, 5.0])
    assert list(days["redelivery"]) == pytest.approx([5.0, 1.0])
    assert list(days["n_intervals"]) == [7, 3]
    assert "negative_consumption" not in set(result.quarantined["rule"])
    assert _accounted(raw, result.accepted.usage, result.quarantined) == (10, 10)
    # a month is not netted silently: both parts are there
    monthly = _profile({"net": _source("net", split_sign=True)})
    (row,) = validate_tables(run_pipeline(monthly, raw), monthly).accepted.usage.itertuples()
    assert (row.consumption, row.redelivery) == pytest.approx((8.5, 6.0))
    # without split_sign the negative day is refused (that is what split_sign is for)
    plain = _profile({"net": _source("net", aggregate="day")})
    refused = validate_tables(run_pipeline(plain, raw), plain)
    assert "negative_consumption" in set(refused.quarantined["rule"])


def test_typo_in_role_or_split_sign_is_refused_at_load() -> None:
    with pytest.raises(ProfileError, match=r"did you mean 'redelivery'") as err:
        _profile({"exports": _source("exports", role="redelivry")})
    assert err.value.key == "mapping.usage.exports.role"
    with pytest.raises(ProfileError, match=r"split_sign"):
        _profile({"net": _source("net", split_sign="yes")})
    with pytest.raises(ProfileError, match=r"did you mean 'split_sign'"):
        _profile({"net": _source("net", split_sing=True)})


def test_roles_that_contradict_each_other_are_mapping_errors() -> None:
    raw = {"meters": _meters(), "net": _hourly("IMP", [1.0])}
    bad = [
        (_source("net", role="production", split_sign=True), "split_sign"),
        (
            {
                **_source("net", role="redelivery"),
                "fields": {
                    "meter_id": "m",
                    "start": "s",
                    "end": "e",
                    "consumption": "v",
                    "redelivery": "v",
                },
            },
            "maps both consumption and redelivery",
        ),
        (_source("net", role="export"), "not one of"),  # a plain dict mapping skips the loader
    ]
    profile = _profile({})
    for src, words in bad:
        with pytest.raises(MappingError, match=words) as err:
            run_pipeline(
                profile, raw, mapping={"assets": ASSETS, "meters": METERS, "usage": {"net": src}}
            )
        assert err.value.hint


def test_a_role_syncs_the_sandbox_over_loopback(
    small_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """The sandbox's interval meters as production meters (role = "production"): the exported
    usage.csv has their ground-truth energy as production and 0 consumption; bills stay
    consumption."""
    sb = small_sandbox()
    data = read_profile(SANDBOX_PROFILE).to_dict()
    data["mapping"]["usage"]["intervals"]["role"] = "production"
    profile = Profile.from_dict(data)
    clock = FakeClock(datetime(2024, 4, 1, tzinfo=UTC))
    run_sync(profile, out=tmp_path, clock=clock, formats=("csv",), until="2024-04-01")
    usage = pd.read_csv(tmp_path / "export" / "usage.csv", dtype={"meter_external_id": str})
    meters = pd.read_csv(tmp_path / "export" / "meters.csv", dtype=str)
    truth = sb.ground_truth()
    kinds = {m["id"]: m["kind"] for m in sb.data.meters}
    interval = {m for m, k in kinds.items() if k == "interval"} & set(meters["external_id"])
    assert interval and set(kinds.values()) - {"interval"}  # both kinds are in the run
    usage["month"] = usage["start_date"].str[:7]
    got = usage.set_index(["meter_external_id", "month"])
    checked = 0
    for t in truth.itertuples():
        if (t.meter_id, t.month) not in got.index:
            continue
        row = got.loc[(t.meter_id, t.month)]
        energy = t.consumption if np.isnan(t.production) else t.production  # solar: production
        if t.meter_id in interval:
            assert row["production"] == pytest.approx(energy, rel=1e-6)
            assert row["consumption"] == 0.0
        else:
            assert row["consumption"] == pytest.approx(t.consumption, rel=1e-6)
            assert pd.isna(row["production"])
        checked += 1
    assert checked >= 6


def test_role_and_split_sign_round_trip_through_the_mapping_workbook(tmp_path: Path) -> None:
    from scaler_workbench.mapping import check_mapping, read_mapping_workbook, to_mapping_workbook

    profile = _profile(
        {
            "exports": _source("exports", role="redelivery", value_field="redelivery"),
            "net": _source("net", split_sign=True),
        }
    )
    out = to_mapping_workbook(profile, tmp_path / "m.xlsx")
    assert read_mapping_workbook(out) == profile.section("mapping")
    bad = json.loads(json.dumps(profile.section("mapping")))
    bad["usage"]["exports"]["role"] = "export"
    raw = {"meters": _meters(), "exports": _hourly("EXP", [1.0]), "net": _hourly("IMP", [1.0])}
    found = check_mapping(bad, raw)
    hit = found[(found["check"] == "unknown_setting") & (found["source"] == "exports")]
    assert len(hit) == 1 and "role = 'export'" in hit["message"].iloc[0]


@pytest.mark.parametrize("opts", [{"split_sign": True}, {"role": "redelivery"}])
def test_roles_stream_in_chunks_as_they_run_whole(opts: dict[str, Any]) -> None:
    import scaler_workbench.pipeline as P
    from scaler_workbench.transform import resolve_mapping

    rng = np.random.default_rng(5)
    raw: dict[str, Any] = {"meters": _meters()[:2], "net": []}
    for meter in ("IMP", "EXP"):
        raw["net"] += _hourly(meter, [round(float(x), 3) for x in rng.normal(0.2, 1.0, 24 * 40)])
    profile = _profile({"net": _source("net", **opts)})
    assert P._stream_plan(resolve_mapping(profile), raw, 100) is not None  # it does stream
    whole = run_pipeline(profile, raw, chunk_records=10**12)
    streamed = run_pipeline(profile, raw, chunk_records=100)
    for name in ("meters", "usage", "quarantine", "completeness"):
        pd.testing.assert_frame_equal(getattr(streamed, name), getattr(whole, name), obj=name)
    # every interval's value reached the totals: kWh for IMP, Wh / 1000 for EXP
    factor = {"IMP": 1.0, "EXP": 1e-3}
    want_red = want_con = 0.0
    for r in raw["net"]:
        v = r["v"] * factor[r["m"]]
        if "split_sign" in opts:
            want_con, want_red = want_con + max(v, 0.0), want_red + max(-v, 0.0)
        else:
            want_red += v
    assert whole.usage["redelivery"].sum() == pytest.approx(want_red, rel=1e-9)
    assert whole.usage["consumption"].sum() == pytest.approx(want_con, abs=1e-9)


def test_reasons_name_the_sources_role_not_consumption() -> None:
    """A null or infinite value of a production or redelivery source is named as what it is."""
    raw = {
        "meters": _meters(),
        "imports": _hourly("IMP", [1.0, None]),
        "exports": _hourly("EXP", [None, float("inf")]),
        "solar": _hourly("PV", [None, 0.5]),
    }
    profile = _profile(
        {
            "imports": _source("imports"),
            "exports": _source("exports", role="redelivery", value_field="redelivery"),
            "solar": _source("solar", role="production"),  # value mapped as consumption
        }
    )
    q = run_pipeline(profile, raw).quarantine
    where = q["rule"] + ":" + q["record_key"].str.split("|").str[0]
    reasons = dict(zip(where, q["reason"], strict=True))
    assert len(reasons) == len(q) == 4
    assert "1 production value(s) of meter 'PV' (solar)" in reasons["no_data:PV"]
    assert "1 redelivery value(s) of meter 'EXP' (exports)" in reasons["no_data:EXP"]
    assert "1 consumption value(s) of meter 'IMP' (imports)" in reasons["no_data:IMP"]
    (inf,) = [r for k, r in reasons.items() if k.startswith("non_finite")]
    assert "(exports): redelivery is infinite" in inf
