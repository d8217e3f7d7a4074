"""Units: the one pint registry of the package and vectorised normalisation to canonical units.

Every meter type has one canonical unit (:data:`scaler_workbench.schema.CANONICAL_UNITS`:
Energy kWh, Water m³, Waste kg). Values are converted by multiplying a float64 column with one
factor per distinct (unit, meter type, subtype) group; pint is asked once per distinct pair of
units, never once per row (:func:`conversion_factor` is cached and :func:`pint_calls` counts its
misses, so a test can prove it).

Unit labels as providers write them go through :func:`resolve_unit`:

1. the profile's ``[units.aliases]`` (exact label, then case-insensitive), the only way to settle
   an ambiguous label;
2. ambiguous labels (:data:`AMBIGUOUS`: "therms", "gallons", "tons", "MBtu", "MCF") raise
   :class:`~scaler_workbench.exceptions.UnitError` naming the unit, the meter and the choice;
3. common spellings (:data:`LABELS`: "KWH", "m3", "cubic meters", "CCF", ...);
4. anything pint (plus ``data/units.txt``) parses.

Gas volume becomes energy only through a heating value the profile states in
``[units.heating_value]`` (:func:`heating_value`): presets ``uk`` (kWh = m³ × 1.02264 × CV / 3.6,
CV [MJ/m³] default 39.5), ``portfolio_manager_us`` (1.026 kBtu/ft³) and ``canada``
(1.031 kBtu/ft³), or an explicit ``kwh_per_m3``.

In :func:`normalise_tables` a meter whose unit is unknown, ambiguous or impossible for its meter
type does not stop the run: its usage and readings rows move to ``Tables.quarantine`` (stage
``units``, severity ``error``, the reason saying what to choose) and the rest of the portfolio
flows. :func:`convert` on its own raises :class:`UnitError` instead.

:class:`UnitNormaliser` is that normalisation for one meters table, applied frame by frame:
:func:`normalise_tables` uses it once per table, the streamed pipeline once per chunk of whole
meters, so the two paths cannot drift apart.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from scaler_workbench._numeric import apply_power_of_ten
from scaler_workbench._secrets import get_logger
from scaler_workbench.exceptions import ProfileError, UnitError
from scaler_workbench.schema import (
    CANONICAL_UNITS,
    QUARANTINE,
    Tables,
    empty_frame,
    quarantine_rows,
)

__all__ = [
    "AMBIGUOUS",
    "GREEN_BUTTON_UOM",
    "HEATING_VALUE_PRESETS",
    "LABELS",
    "HeatingValue",
    "UnitNormaliser",
    "apply_power_of_ten",
    "conversion_factor",
    "convert",
    "get_registry",
    "green_button_cost",
    "heating_value",
    "normalise_tables",
    "pint_calls",
    "readings_in_meter_units",
    "resolve_unit",
    "suggest_units",
]

log = get_logger(__name__)

# ---- the registry ---------------------------------------------------------------------------
_registry: Any = None
_registry_lock = threading.Lock()
_pint_calls = 0


def get_registry() -> Any:
    """Return the package's one pint ``UnitRegistry`` (built lazily, then cached).

    It uses exact rational arithmetic (``non_int_type=Fraction``) so that factors such as
    UK gallon → litre (4.54609) come out exactly rounded, and loads ``data/units.txt``. Every
    unit question in the package (conversion, validation's unit rule, the mapping workbook)
    goes through this registry: there is no other.

    Returns
    -------
    pint.UnitRegistry
        The same object on every call (thread-safe first build).
    """
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                import pint

                reg: Any = pint.UnitRegistry(
                    non_int_type=Fraction, autoconvert_offset_to_baseunit=True
                )
                text = (
                    resources.files("scaler_workbench")
                    .joinpath("data/units.txt")
                    .read_text(encoding="utf-8")
                )
                reg.load_definitions(text.splitlines())
                _registry = reg
    return _registry


def pint_calls() -> int:
    """Number of times pint has been asked to parse or convert (cache misses) so far.

    Returns
    -------
    int
        Calls since the process started [calls]: a test compares two readings.
    """
    return _pint_calls


def _count() -> None:
    global _pint_calls
    _pint_calls += 1


#: "100 kBtu", "1e3 Wh", "0.5*m**3": a number, then the unit (an alias may scale a unit)
_SCALED = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*\*?\s*([A-Za-z_].*)$")


def _one(reg: Any, expr: str) -> Any:
    """One ``expr`` as an exact pint quantity; a leading number scales the unit."""
    m = _SCALED.match(expr)
    if m:
        return Fraction(m.group(1)) * reg.Quantity(Fraction(1), m.group(2).strip())
    return reg.Quantity(Fraction(1), expr)


@lru_cache(maxsize=4096)
def _exact_factor(from_unit: str, to_unit: str) -> Fraction:
    import pint

    _count()
    reg = get_registry()
    try:
        q = _one(reg, from_unit).to(to_unit)
    except pint.DimensionalityError as exc:
        raise UnitError(
            f"cannot convert {from_unit!r} to {to_unit!r}: different dimensions",
            unit=from_unit,
            hint="Check the meter type (Energy/Water/Waste) or state a heating value for gas.",
        ) from exc
    except (pint.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError) as exc:
        raise UnitError(f"unknown unit {from_unit!r} or {to_unit!r}", unit=from_unit) from exc
    except Exception as exc:  # pint's parser raises assorted errors on junk labels
        raise UnitError(
            f"cannot read unit {from_unit!r} / {to_unit!r}: {exc}", unit=from_unit
        ) from exc
    return Fraction(q.magnitude)


def conversion_factor(from_unit: str, to_unit: str) -> float:
    """Multiplier taking a value in ``from_unit`` to ``to_unit`` (pint expressions).

    Cached: pint is asked once per distinct pair (see :func:`pint_calls`).

    Parameters
    ----------
    from_unit, to_unit : str
        pint expressions (``"kWh"``, ``"US_therm"``, ``"m**3"``).

    Returns
    -------
    float
        The factor [to_unit / from_unit], exactly rounded from the rational one.

    Raises
    ------
    UnitError
        If either unit is unknown or the dimensions differ.
    """
    return float(_exact_factor(from_unit, to_unit))


@lru_cache(maxsize=4096)
def dimension_of(unit: str) -> str:
    """``energy``, ``volume``, ``mass`` or ``other`` for a pint expression (cached)."""
    _count()
    reg = get_registry()
    try:
        dim = _one(reg, unit).dimensionality
    except Exception as exc:
        raise UnitError(f"unknown unit {unit!r}", unit=unit) from exc
    for name, ref in (
        ("energy", "[energy]"),
        ("volume", "[volume]"),
        ("mass", "[mass]"),
        ("power", "[power]"),
    ):
        if dim == reg.get_dimensionality(ref):
            return name
    return "other"


# ---- labels -----------------------------------------------------------------------------------
#: Ambiguous labels (lower case) and the unambiguous choices an alias may point at.
AMBIGUOUS: dict[str, dict[str, str]] = {
    "therm": {
        "US_therm": "US therm, 105.4804 MJ = 29.3001 kWh",
        "therm": "100,000 Btu, 105.5056 MJ = 29.3071 kWh: Portfolio Manager and Green Button "
        "(ESPI uom 169) mean this one",
    },
    "gallon": {"US_gallon": "US gallon, 3.785411784 L", "UK_gallon": "UK gallon, 4.54609 L"},
    "ton": {"tonne": "metric tonne, 1000 kg", "short_ton": "US short ton, 907.18474 kg"},
    "mbtu": {"kBtu": "thousand Btu (US bills)", "MMBtu": "million Btu (pint reads MBtu so)"},
    "mcf": {"Mcf": "thousand ft³ (utilities)", "MMcf": "million ft³ (Portfolio Manager)"},
}
_AMBIGUOUS_LABELS: dict[str, str] = {
    "therm": "therm",
    "therms": "therm",
    "thm": "therm",
    "thms": "therm",
    "gallon": "gallon",
    "gallons": "gallon",
    "gal": "gallon",
    "gals": "gallon",
    "ton": "ton",
    "tons": "ton",
    "mbtu": "mbtu",
    "mcf": "mcf",
}

#: Common spellings (lower case, spaces collapsed) -> pint expression.
LABELS: dict[str, str] = {
    "wh": "Wh",
    "kwh": "kWh",
    "kw h": "kWh",
    "kw.h": "kWh",
    "kwhr": "kWh",
    "kilowatt hour": "kWh",
    "kilowatt hours": "kWh",
    "kilowatt-hours": "kWh",
    "mwh": "MWh",
    "gwh": "GWh",
    "j": "J",
    "kj": "kJ",
    "mj": "MJ",
    "gj": "GJ",
    "btu": "Btu",
    "kbtu": "kBtu",
    "mmbtu": "MMBtu",
    "dth": "Dth",
    "dekatherm": "Dth",
    "dekatherms": "Dth",
    "us therm": "US_therm",
    "us therms": "US_therm",
    "us_therm": "US_therm",
    "uk therm": "therm",
    "ec therm": "therm",
    "m3": "m3",
    "m³": "m3",
    "m^3": "m3",
    "cubic meter": "m3",
    "cubic meters": "m3",
    "cubic metre": "m3",
    "cubic metres": "m3",
    "cu m": "m3",
    "l": "L",
    "liter": "L",
    "liters": "L",
    "litre": "L",
    "litres": "L",
    "kl": "kL",
    "ml": "mL",
    "cf": "cf",
    "ft3": "cf",
    "ft³": "cf",
    "cu ft": "cf",
    "cubic feet": "cf",
    "cubic foot": "cf",
    "ccf": "ccf",
    "hcf": "ccf",
    "kcf": "Mcf",
    "mmcf": "MMcf",
    "us gallon": "US_gallon",
    "us gallons": "US_gallon",
    "us gal": "US_gallon",
    "us_gal": "US_gallon",
    "us_gallon": "US_gallon",
    "uk gallon": "UK_gallon",
    "uk gallons": "UK_gallon",
    "imperial gallon": "UK_gallon",
    "imperial gallons": "UK_gallon",
    "uk_gallon": "UK_gallon",
    "kgal": "kilogallon",  # thousand US gallons
    "g": "g",
    "kg": "kg",
    "kgs": "kg",
    "kilogram": "kg",
    "kilograms": "kg",
    "t": "tonne",
    "tonne": "tonne",
    "tonnes": "tonne",
    "metric ton": "tonne",
    "metric tons": "tonne",
    "metric_ton": "tonne",
    "short ton": "short_ton",
    "short tons": "short_ton",
    "us ton": "short_ton",
    "us tons": "short_ton",
    "lb": "lb",
    "lbs": "lb",
    "pound": "lb",
    "pounds": "lb",
    # ENERGY STAR Portfolio Manager's unitOfMeasure enumeration: the explanation in brackets
    # makes each unambiguous ("MBtu (million Btu)" = MMBtu, "Mcf (million cubic feet)" = MMcf).
    # Rates ("Cubic Meters per Day", "Million Gallons per Day") and "therms"/"tons" are left out:
    # a rate is not a quantity, and the others need the analyst's choice in [units.aliases].
    "kwh (thousand watt-hours)": "kWh",
    "mwh (million watt-hours)": "MWh",
    "kbtu (thousand btu)": "kBtu",
    "mbtu (million btu)": "MMBtu",
    "mmbtu (million btu)": "MMBtu",
    "ton hours": "refrigeration_ton * hour",
    "ccf (hundred cubic feet)": "ccf",
    "cf (cubic feet)": "cf",
    "kcf (thousand cubic feet)": "Mcf",
    "mcf (million cubic feet)": "MMcf",
    "mcf(million cubic feet)": "MMcf",
    "cm (cubic meters)": "m3",
    "kcm (thousand cubic meters)": "dam ** 3",
    "kcubic meters (thousand cubic meters)": "dam ** 3",
    "gallons (us)": "US_gallon",
    "gallons (uk)": "UK_gallon",
    "cgal (hundred gallons) (us)": "hectogallon",
    "cgal (hundred gallons) (uk)": "hectoUK_gallon",
    "kgal (thousand gallons) (us)": "kilogallon",
    "kgal (thousand gallons) (uk)": "kiloUK_gallon",
    "mgal (million gallons) (us)": "megagallon",
    "mgal (million gallons) (uk)": "megaUK_gallon",
    "klbs. (thousand pounds)": "kilolb",
    "mlbs. (million pounds)": "megalb",
    "tonnes (metric)": "tonne",
}

_SPACES = re.compile(r"\s+")
_NOT_A_SYMBOL = re.compile(r"[\s()\[\],;:]")


def _key(label: str) -> str:
    return _SPACES.sub(" ", label.strip()).lower()


def _ambiguity_error(label: str, group: str, meter: str | None, column: str | None) -> UnitError:
    choices = AMBIGUOUS[group]
    options = "; ".join(f"{name!r} ({text})" for name, text in choices.items())
    where = f" of meter {meter!r}" if meter else ""
    return UnitError(
        f"unit label {label!r}{where} is ambiguous: it could be {options}",
        unit=label,
        meter=meter,
        column=column,
        choices=tuple(choices),
        hint=f"Choose in the profile: [units.aliases] {label!r} = "
        f"{' or '.join(repr(c) for c in choices)}: ask the provider which one it means "
        "(each is described above).",
    )


def resolve_unit(
    label: object,
    aliases: Mapping[str, str] | None = None,
    *,
    meter: str | None = None,
    column: str | None = None,
) -> str:
    """Return the pint expression for a provider's unit label.

    Parameters
    ----------
    label : str
        The unit as the provider wrote it ("kWh", "therms", "m3", ...).
    aliases : mapping, optional
        The profile's ``[units.aliases]``: label -> pint expression (the explicit choice).
    meter, column : str, optional
        Context for the error message.

    Returns
    -------
    str
        A pint expression the registry parses (``"kWh"``, ``"m**3"``, ``"US_therm"``).

    Raises
    ------
    UnitError
        If the label is empty, ambiguous without an alias, or unknown.
    """
    if label is None or (isinstance(label, float) and np.isnan(label)) or str(label).strip() == "":
        raise UnitError(
            f"no unit given{f' for meter {meter!r}' if meter else ''}",
            unit=label,
            meter=meter,
            column=column,
            hint="Map a unit field for the meter (or a constant unit) in the mapping.",
        )
    text = str(label).strip()
    key = _key(text)
    if aliases:
        target = aliases.get(text)
        if target is None:
            lowered = {_key(k): v for k, v in aliases.items()}
            target = lowered.get(key)
        if target is not None:
            return _resolve_target(str(target), text, meter, column)
    group = _AMBIGUOUS_LABELS.get(key)
    if group is not None:
        raise _ambiguity_error(text, group, meter, column)
    expr = LABELS.get(key)
    if expr is None:
        if _NOT_A_SYMBOL.search(text):  # free text ("cubic metres (m3)"): ask for an alias
            raise UnitError(
                f"unknown unit {text!r}{f' of meter {meter!r}' if meter else ''}",
                unit=text,
                meter=meter,
                column=column,
                hint=f"Add [units.aliases] {text!r} = '<pint unit>' to the profile; "
                "suggest_units() proposes one.",
            )
        expr = text
    _check_parses(expr, text, meter, column)
    return expr


def _resolve_target(target: str, label: str, meter: str | None, column: str | None) -> str:
    expr = LABELS.get(_key(target), target)
    _check_parses(expr, label, meter, column)
    return expr


def _check_parses(expr: str, label: str, meter: str | None, column: str | None) -> None:
    try:
        dimension_of(expr)
    except UnitError as exc:
        raise UnitError(
            f"unknown unit {label!r}{f' of meter {meter!r}' if meter else ''}",
            unit=label,
            meter=meter,
            column=column,
            hint=f"Add [units.aliases] {label!r} = '<pint unit>' to the profile "
            "(e.g. 'kWh', 'm3', 'US_therm'); see suggest_units().",
        ) from exc


# ---- heating value ----------------------------------------------------------------------------
#: Presets for gas volume -> energy. ``kbtu_per_ft3`` or the UK formula.
HEATING_VALUE_PRESETS: dict[str, dict[str, float | str]] = {
    "uk": {"formula": "uk", "calorific_value": 39.5},
    "portfolio_manager_us": {"kbtu_per_ft3": 1.026},
    "us": {"kbtu_per_ft3": 1.026},
    "canada": {"kbtu_per_ft3": 1.031},
}


@dataclass(frozen=True)
class HeatingValue:
    """How gas volume becomes energy: ``kwh_per_m3`` [kWh/m³] and a description stating it."""

    kwh_per_m3: float
    description: str


def heating_value(spec: Mapping[str, Any] | None) -> HeatingValue | None:
    """Build the heating value from a profile's ``[units.heating_value]`` table.

    Keys: ``preset`` (``uk``, ``portfolio_manager_us``/``us``, ``canada``),
    ``calorific_value`` [MJ/m³] (UK formula, default 39.5), ``kbtu_per_ft3`` or ``kwh_per_m3``.

    Parameters
    ----------
    spec : mapping or None
        The ``[units.heating_value]`` table (or one of its ``by_subtype`` entries).

    Returns
    -------
    HeatingValue or None
        ``kwh_per_m3`` [kWh/m³] with a description; None when ``spec`` is empty.

    Raises
    ------
    ProfileError
        For an unknown preset or a non-positive value.
    """
    if not spec:
        return None
    spec = dict(spec)
    preset = spec.get("preset")
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in HEATING_VALUE_PRESETS:
            raise ProfileError(
                f"unknown heating value preset {preset!r}",
                key="units.heating_value.preset",
                hint=f"Use one of {sorted(HEATING_VALUE_PRESETS)} or give kwh_per_m3.",
            )
        base.update(HEATING_VALUE_PRESETS[preset])
    base.update({k: v for k, v in spec.items() if k not in ("preset", "by_subtype")})
    try:
        if "kwh_per_m3" in base:
            value = float(base["kwh_per_m3"])
            text = f"gas {value} kWh/m³ (stated)"
        elif "kbtu_per_ft3" in base:
            hv = float(base["kbtu_per_ft3"])
            value = hv * conversion_factor("kBtu", "kWh") / conversion_factor("cf", "m3")
            text = f"gas {hv} kBtu/ft³ ({preset or 'stated'}) = {value:.6g} kWh/m³"
        elif base.get("formula") == "uk" or "calorific_value" in base:
            cv = float(base.get("calorific_value", 39.5))
            value = 1.02264 * cv / 3.6
            text = f"gas UK: m³ × 1.02264 × CV {cv} MJ/m³ ÷ 3.6 = {value:.6g} kWh/m³"
        else:
            raise ProfileError(
                "[units.heating_value] needs preset, calorific_value, kbtu_per_ft3 or kwh_per_m3",
                key="units.heating_value",
            )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProfileError):
            raise
        raise ProfileError(
            f"[units.heating_value] values must be numbers: {exc}", key="units.heating_value"
        ) from exc
    if not value > 0:
        raise ProfileError("the heating value must be positive", key="units.heating_value")
    return HeatingValue(value, text)


# ---- vectorised conversion -------------------------------------------------------------------
def _dense_factorize(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes and sorted distinct values of non-negative integer ``keys`` below ``space``.

    No hashing: a count over the (small) key space, then a lookup. Codes are int32.
    """
    present = np.flatnonzero(np.bincount(keys, minlength=space))
    remap = np.full(space, -1, dtype=np.int32)
    remap[present] = np.arange(len(present), dtype=np.int32)
    return remap[keys], present


_CHUNK = 1 << 16  # rows per chunk of a gather: the temporaries stay small and are reused


def _with_columns(frame: pd.DataFrame, new: Mapping[str, Any]) -> pd.DataFrame:
    """``frame`` with columns replaced or appended (as ``frame[c] = v`` would), no copies."""
    cols: dict[str, Any] = {c: new[c] if c in new else frame[c] for c in frame.columns}
    cols.update({c: v for c, v in new.items() if c not in cols})
    return pd.DataFrame(cols, index=frame.index, copy=False)


class _Runs:
    """Runs of equal codes: a chunk's rows of one meter are contiguous, so a per-meter value
    is written run by run (``np.repeat``) instead of gathered row by row.

    :meth:`of` gives None when the codes change too often for that to pay (then the chunked
    gathers run); every method equals its row-by-row counterpart, bit for bit.
    """

    __slots__ = ("codes", "lengths")

    def __init__(self, codes: np.ndarray, lengths: np.ndarray) -> None:
        self.codes, self.lengths = codes, lengths

    @classmethod
    def of(cls, codes: np.ndarray) -> _Runs | None:
        """The runs of ``codes``, or None when there are more than one per 1,024 rows."""
        n = len(codes)
        if n < 2 * _RUN_ROWS:
            return None
        change = np.flatnonzero(codes[1:] != codes[:-1])
        if len(change) >= n // _RUN_ROWS:
            return None
        starts = np.empty(len(change) + 1, dtype=np.intp)
        starts[0] = 0
        np.add(change, 1, out=starts[1:])
        return cls(codes[starts], np.diff(starts, append=n))

    def gather(self, table: np.ndarray) -> np.ndarray:
        """``table[codes]`` (code -1 reads the last entry)."""
        return np.repeat(np.take(table, self.codes, mode="wrap"), self.lengths)

    def multiply(self, values: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """``values * factors[codes]``, one multiplication by a scalar per run."""
        out = np.empty(len(values), dtype=np.float64)
        per_run = np.take(factors, self.codes, mode="wrap").tolist()
        a = 0
        for f, k in zip(per_run, self.lengths.tolist(), strict=True):
            np.multiply(values[a : a + k], np.float64(f), out=out[a : a + k])
            a += k
        return out


_RUN_ROWS = 1024  # runs pay when they average at least this many rows


def _cat_take(
    values: Sequence[Any], codes: np.ndarray, runs: _Runs | None = None
) -> pd.Categorical:
    """A categorical whose row i holds ``values[codes[i]]`` (no per-row Python, one gather)."""
    vcodes, vuniq = pd.factorize(pd.Series(list(values), dtype=object))
    vcodes = vcodes.astype(np.int8 if len(vuniq) < 127 else np.int32)  # small rows, one pass
    row_codes = _gather_chunked(vcodes, codes, runs) if len(vcodes) else np.full(len(codes), -1)
    return pd.Categorical.from_codes(
        row_codes, categories=pd.Index(vuniq, dtype=object), validate=False
    )


def _gather_chunked(table: np.ndarray, codes: np.ndarray, runs: _Runs | None = None) -> np.ndarray:
    """``table[codes]`` (code -1 reads the last entry) written chunk by chunk into one array
    (run by run when ``runs`` of ``codes`` are given)."""
    if runs is not None:
        return runs.gather(table)
    out = np.empty(len(codes), dtype=table.dtype)
    for a in range(0, len(codes), _CHUNK):
        np.take(table, codes[a : a + _CHUNK], out=out[a : a + _CHUNK], mode="wrap")
    return out


def _multiply_chunked(
    values: np.ndarray, factors: np.ndarray, codes: np.ndarray, runs: _Runs | None = None
) -> np.ndarray:
    """``values * factors[codes]`` without a full-length factor temporary (bit-identical)."""
    if runs is not None:
        return runs.multiply(values, factors)
    out = np.empty(len(values), dtype=np.float64)
    buf = np.empty(min(len(values), _CHUNK), dtype=np.float64)
    for a in range(0, len(values), _CHUNK):
        b = min(len(values), a + _CHUNK)
        f = buf[: b - a]
        np.take(factors, codes[a:b], out=f, mode="wrap")
        np.multiply(values[a:b], f, out=out[a:b])
    return out


def _factor_categorical(
    factors: np.ndarray, codes: np.ndarray, runs: _Runs | None = None
) -> pd.Categorical:
    """The per-row factor ``factors[codes]`` as a categorical over the distinct factors (NaN:
    missing). Reads as float64 (``to_numpy``, ``astype``) with the same values."""
    fcodes, funiq = pd.factorize(factors, use_na_sentinel=True)
    small = fcodes.astype(np.int8 if len(funiq) < 127 else np.int32)
    return pd.Categorical.from_codes(
        _gather_chunked(small, codes, runs) if len(small) else np.full(len(codes), -1, np.int8),
        categories=pd.Index(funiq, dtype=np.float64),
        validate=False,
    )


def _as_array(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr


def _group_factor(
    expr: str,
    canonical: str,
    hv: HeatingValue | None,
    *,
    label: str,
    meter: str | None,
) -> tuple[float, str]:
    """Factor from ``expr`` to ``canonical`` and a note when a heating value was used."""
    target = LABELS.get(_key(canonical), canonical)
    src_dim = dimension_of(expr)
    dst_dim = dimension_of(target)
    if src_dim == "volume" and dst_dim == "energy":
        if hv is None:
            raise UnitError(
                f"unit {label!r}{f' of meter {meter!r}' if meter else ''} is a volume but the "
                "meter type needs energy: a heating value is required",
                unit=label,
                meter=meter,
                hint="State it in the profile: [units.heating_value] preset = 'uk' and "
                "calorific_value = 39.5 (MJ/m³), or preset = 'portfolio_manager_us'.",
            )
        return conversion_factor(expr, "m3") * hv.kwh_per_m3 * conversion_factor(
            "kWh", target
        ), hv.description
    try:
        return conversion_factor(expr, target), ""
    except UnitError as exc:
        raise UnitError(
            f"unit {label!r}{f' of meter {meter!r}' if meter else ''} cannot become {canonical}: "
            f"{src_dim} vs {dst_dim}",
            unit=label,
            meter=meter,
            hint="Check the meter type mapping (Energy kWh, Water m³, Waste kg) and the unit.",
        ) from exc


def convert(
    values: Any,
    from_units: str | Sequence[str] | pd.Series,
    to_unit: str,
    *,
    aliases: Mapping[str, str] | None = None,
    heating: HeatingValue | None = None,
) -> np.ndarray:
    """Convert ``values`` from ``from_units`` (one label, or one per value) to ``to_unit``.

    One factor is computed per distinct label (:func:`conversion_factor`), then applied as a
    single vectorised multiplication.

    Parameters
    ----------
    values : array-like of float
    from_units : str or sequence of str
        Provider unit labels, resolved through ``aliases`` (see :func:`resolve_unit`).
    to_unit : str
        Target (pint expression or a :data:`LABELS` spelling such as "m³").
    heating : HeatingValue, optional
        Needed for gas volume -> energy.

    Returns
    -------
    numpy.ndarray of float64

    Raises
    ------
    UnitError
        For an unknown or ambiguous label, or impossible dimensions.
    """
    arr = _as_array(values)
    if isinstance(from_units, str):
        expr = resolve_unit(from_units, aliases)
        factor, _ = _group_factor(expr, to_unit, heating, label=from_units, meter=None)
        return arr * factor
    codes, uniques = pd.factorize(pd.Series(from_units, copy=False), use_na_sentinel=True)
    if len(codes) != len(arr):
        raise UnitError(
            f"{len(arr)} values but {len(codes)} units", hint="Pass one unit per value."
        )
    if (codes < 0).any():
        raise UnitError("some values have no unit", unit=None, hint="Fill the unit column.")
    factors = np.empty(len(uniques), dtype=np.float64)
    for i, label in enumerate(uniques):
        expr = resolve_unit(label, aliases)
        factors[i] = _group_factor(expr, to_unit, heating, label=str(label), meter=None)[0]
    return arr * factors[codes]


# ---- Green Button -----------------------------------------------------------------------------
#: Green Button (ESPI) ``uom`` codes -> pint expression.
GREEN_BUTTON_UOM: dict[int, str] = {
    72: "Wh",
    38: "W",
    73: "VArh",
    42: "m3",
    119: "cf",
    128: "US_gallon",
    169: "therm",
    132: "Btu",
    31: "J",
}


def green_button_cost(values: Any) -> np.ndarray:
    """Green Button cost fields are in 1/100 000 of the currency: return currency units.

    Parameters
    ----------
    values : array-like of float
        Costs as the feed writes them [1e-5 currency].

    Returns
    -------
    numpy.ndarray of float64
        Costs [currency].
    """
    return _as_array(values) / 100000.0


# ---- suggestions for the explorer ----------------------------------------------------------
_SUGGEST_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bk\s*w\s*h\b|kilowatt", re.I), "kWh"),
    (re.compile(r"\bm\s*w\s*h\b|megawatt", re.I), "MWh"),
    (re.compile(r"\bmmbtu\b", re.I), "MMBtu"),
    (re.compile(r"\bkbtu\b", re.I), "kBtu"),
    (re.compile(r"\bmbtu\b", re.I), "mbtu"),
    (re.compile(r"\bdth\b|dekatherm", re.I), "Dth"),
    (re.compile(r"\bus\s*therms?\b", re.I), "US_therm"),
    (re.compile(r"\btherms?\b|\bthm\b", re.I), "therm"),
    (re.compile(r"\bm\s*(?:3|³|\^3)|cubic\s*met", re.I), "m3"),
    (re.compile(r"\bccf\b|\bhcf\b", re.I), "ccf"),
    (re.compile(r"\bmcf\b", re.I), "mcf"),
    (re.compile(r"\bcu\s*ft\b|\bft\s*(?:3|³)|cubic\s*f", re.I), "cf"),
    (re.compile(r"\bgal(?:lon)?s?\b", re.I), "gallon"),
    (re.compile(r"\blit(?:re|er)s?\b|\bl\b", re.I), "L"),
    (re.compile(r"\btonnes?\b|metric\s*tons?", re.I), "tonne"),
    (re.compile(r"\btons?\b", re.I), "ton"),
    (re.compile(r"\bkgs?\b|kilogram", re.I), "kg"),
    (re.compile(r"\blbs?\b|pounds?", re.I), "lb"),
    (re.compile(r"\bgj\b", re.I), "GJ"),
    (re.compile(r"\bmj\b", re.I), "MJ"),
]


def _alias_line(label: str, options: tuple[str, ...]) -> str:
    """A ``[units.aliases]`` line naming the first choice, the others in a TOML comment.

    For a therm the comment states both with their kWh values, so copying the line is a choice
    made knowingly (Portfolio Manager and ESPI mean pint's ``therm``, 29.3071 kWh).
    """
    group = _AMBIGUOUS_LABELS.get(_key(label))
    texts = AMBIGUOUS.get(group or "", {})
    others = "; ".join(f"{o!r} = {texts.get(o, o)}" for o in options[1:])
    first = f" ({texts[options[0]]})" if options[0] in texts else ""
    return f"{label!r} = {options[0]!r}  # ask the provider{first}; or {others}"


def suggest_units(labels: Iterable[object]) -> pd.DataFrame:
    """Suggest a unit (or the alias choice to make) for each distinct label.

    Parameters
    ----------
    labels : str or iterable
        Unit labels as providers write them (None is skipped; others are read as text); one
        string is one label.

    Returns
    -------
    pandas.DataFrame
        ``label, suggestion, dimension, ambiguous, choices, alias`` (one row per distinct label);
        ``alias`` is the TOML line to add under ``[units.aliases]`` when a choice or spelling
        is needed, else empty.
    """
    if isinstance(labels, str | bytes):  # one label, not its characters
        labels = [labels]
    rows = []
    for label in dict.fromkeys(str(x) for x in labels if x is not None):
        suggestion, ambiguous, choices, alias, dimension = "", False, "", "", ""
        try:
            suggestion = resolve_unit(label)
        except UnitError as exc:
            opts: tuple[str, ...] = tuple(getattr(exc, "choices", ()) or ())
            if opts:
                ambiguous = True
                choices = ", ".join(opts)
                alias = _alias_line(label, opts)
            else:
                for pattern, target in _SUGGEST_PATTERNS:
                    if pattern.search(label):
                        group = _AMBIGUOUS_LABELS.get(target)
                        if group:
                            ambiguous = True
                            choices = ", ".join(AMBIGUOUS[group])
                            suggestion = ""
                            alias = _alias_line(label, tuple(AMBIGUOUS[group]))
                        else:
                            suggestion = LABELS.get(target.lower(), target)
                            alias = f"{label!r} = {suggestion!r}"
                        break
        if suggestion:
            try:
                dimension = dimension_of(suggestion)
            except UnitError:
                dimension = ""
        rows.append(
            {
                "label": label,
                "suggestion": suggestion,
                "dimension": dimension,
                "ambiguous": ambiguous,
                "choices": choices,
                "alias": alias,
            }
        )
    return pd.DataFrame(
        rows, columns=["label", "suggestion", "dimension", "ambiguous", "choices", "alias"]
    )


# ---- tables -----------------------------------------------------------------------------------
#: The value columns of each table that get converted, the first one with lineage.
_VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "usage": ("consumption", "redelivery", "production"),
    "readings": ("value",),
}


class UnitNormaliser:
    """Unit normalisation of one profile and one meters table, applied frame by frame.

    The per-chunk contract of the units stage: :func:`normalise_tables` is one
    :meth:`normalise_meter_rows` per table, then :meth:`meters_quarantine`; the streamed
    pipeline (:mod:`scaler_workbench.pipeline`) calls the same methods per chunk of whole
    meters, so both paths give the same rows.

    Parameters
    ----------
    profile : Profile or None
        ``[units.aliases]`` and ``[units.heating_value]`` (None: neither).
    meters : pandas.DataFrame
        The canonical meters table (``meter_id``, ``meter_type``, ``raw_unit``, optional
        ``meter_subtype``).

    Attributes
    ----------
    meters : pandas.DataFrame
        ``meters`` with ``unit`` set to its meter type's canonical unit ([kWh], [m³], [kg]).

    Raises
    ------
    ProfileError
        If ``[units.heating_value]`` is malformed.
    """

    def __init__(self, profile: Any, meters: pd.DataFrame) -> None:
        section = profile.section("units") if profile is not None else {}
        self._aliases = {str(k): str(v) for k, v in dict(section.get("aliases", {})).items()}
        hv_spec = section.get("heating_value")
        self._hv = heating_value(hv_spec)
        self._hv_by_subtype: dict[str, Any] = {}
        if isinstance(hv_spec, Mapping):
            for sub, spec in dict(hv_spec.get("by_subtype", {})).items():
                self._hv_by_subtype[str(sub)] = heating_value(spec)
        self.meters, self._bad_meters = _canonical_meters(meters)
        self._info = self.meters.set_index("meter_id") if len(self.meters) else None

    def normalise_meter_rows(
        self, table: str, frame: pd.DataFrame
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One usage or readings frame in canonical units, and its rows set aside.

        Each meter's rows get one factor per distinct (unit label, meter type, subtype), so
        any split of a frame between meters gives the same rows. Values are multiplied into
        the canonical unit; lineage: ``raw_value`` (as reported, unless already set),
        ``raw_unit`` (the label), ``factor`` (multiplied into an earlier factor), ``unit``.

        Parameters
        ----------
        table : {"usage", "readings"}
            Which values to convert: ``consumption``, ``redelivery``, ``production``
            [provider unit -> kWh, m³ or kg], or ``value``.
        frame : pandas.DataFrame
            Rows of ``table`` in the provider's units (``meter_id``, optional ``unit``).

        Returns
        -------
        (pandas.DataFrame, pandas.DataFrame)
            The converted rows, and the rows of meters whose unit or type is unusable in
            :data:`~scaler_workbench.schema.QUARANTINE` form (stage ``units``, rule ``unit``).
            Such meters are remembered for :meth:`meters_quarantine`.

        Raises
        ------
        KeyError
            If ``table`` is neither ``usage`` nor ``readings``.
        """
        frame, bad = _normalise_frame(
            frame,
            self._info,
            _VALUE_COLUMNS[table],
            aliases=self._aliases,
            hv=self._hv,
            hv_by_subtype=self._hv_by_subtype,
            bad_meters=self._bad_meters,
        )
        if bad is None or not len(bad[0]):
            return frame, empty_frame(QUARANTINE)
        rows, reasons = bad
        return frame, quarantine_rows(
            rows, table=table, stage="units", rule="unit", reasons=reasons
        )

    def meters_quarantine(self) -> pd.DataFrame:
        """The meters whose rows were set aside so far, reported once each.

        Returns
        -------
        pandas.DataFrame
            :data:`~scaler_workbench.schema.QUARANTINE` rows of table ``meters`` (stage
            ``units``, rule ``unit``, severity ``warning``: the meter row itself is kept).
        """
        bad_meters = self._bad_meters
        if not bad_meters:
            return empty_frame(QUARANTINE)
        meters = self.meters
        mrows = meters[meters["meter_id"].astype("string").isin(list(bad_meters))]
        reasons = mrows["meter_id"].astype("string").map(bad_meters)
        for meter, reason in bad_meters.items():
            log.warning("meter %s: rows quarantined: %s", meter, reason)
        return quarantine_rows(
            mrows, table="meters", stage="units", rule="unit", reasons=reasons, severity="warning"
        )


def normalise_tables(tables: Tables, profile: Any) -> Tables:
    """Convert every usage and reading value to its meter type's canonical unit.

    ``usage.consumption``, ``redelivery``, ``production`` and ``readings.value`` are multiplied
    by one factor per distinct (unit label, meter type, subtype) into [kWh], [m³] or [kg];
    lineage is kept: ``raw_value`` (as reported, if not already set), ``raw_unit`` (the label),
    ``factor`` (multiplied into any earlier factor) and ``unit`` (canonical). Meters get the
    canonical ``unit`` and keep their label in ``raw_unit``. Per table this is
    :meth:`UnitNormaliser.normalise_meter_rows`, the function the streamed pipeline calls per
    chunk.

    A meter whose unit cannot be resolved (unknown, ambiguous without an alias, volume without a
    heating value, impossible for its type) or whose meter type is unknown has its usage and
    readings rows moved to ``quarantine`` (stage ``units``, rule ``unit``, severity ``error``) with
    the reason; the meter row itself is reported once (table ``meters``).

    Parameters
    ----------
    tables : Tables
        Canonical tables in the provider's units (:func:`~scaler_workbench.transform.build_tables`).
    profile : Profile or None
        ``[units.aliases]``, ``[units.heating_value]``.

    Returns
    -------
    Tables
        A new Tables: values in canonical units; the quarantine is the input's, then the rows
        set aside here (usage, readings, then the meters).

    Raises
    ------
    ProfileError
        If ``[units.heating_value]`` is malformed.
    """
    normaliser = UnitNormaliser(profile, tables.meters)
    out = Tables(
        assets=tables.assets,
        meters=normaliser.meters,
        usage=tables.usage,
        readings=tables.readings,
        quarantine=tables.quarantine,
        completeness=tables.completeness,
        holes=tables.holes,
    )
    q_parts = [tables.quarantine]
    for name in ("usage", "readings"):
        frame: pd.DataFrame = getattr(tables, name)
        if not len(frame):
            continue
        frame, q = normaliser.normalise_meter_rows(name, frame)
        q_parts.append(q)
        setattr(out, name, frame)
    q_parts.append(normaliser.meters_quarantine())
    out.quarantine = (
        pd.concat([p for p in q_parts if len(p)], ignore_index=True)
        if any(len(p) for p in q_parts)
        else tables.quarantine
    )
    return out


#: How a resolved unit expression is written in the export when it differs from its symbol.
_EXPORT_SYMBOLS = {"m3": "m³"}


def readings_in_meter_units(
    readings: pd.DataFrame, meters: pd.DataFrame, profile: Any
) -> pd.DataFrame:
    """Register readings back in each meter's own unit, for the export.

    The units stage converts readings into the meter type's canonical unit, so the register
    differences become consumption ([kWh], [m³], [kg]); but a register is read in its own unit:
    a gas meter counting [m³] must be exported in [m³], not as a heating-value product in [kWh].
    Each (meter, unit label) group's value is divided by the factor the units stage applied
    (same aliases, same heating value) and ``unit`` becomes the resolved unit (``m³``, ``kWh``,
    ``US_therm``, ...). Rows whose label cannot be resolved keep the canonical unit.

    Parameters
    ----------
    readings : pandas.DataFrame
        Canonical readings (``meter_id``, ``value`` [canonical unit], ``unit``, ``raw_unit``).
    meters : pandas.DataFrame
        The meters table (``meter_id``, ``meter_type``, optional ``meter_subtype``,
        ``raw_unit``).
    profile : Profile or None
        ``[units.aliases]`` and ``[units.heating_value]``, as for :func:`normalise_tables`.

    Returns
    -------
    pandas.DataFrame
        A copy of ``readings`` with ``value`` [meter unit] and ``unit`` (the meter's unit).

    Raises
    ------
    ProfileError
        If ``[units.heating_value]`` is malformed.
    """
    if not len(readings) or "raw_unit" not in readings.columns or not len(meters):
        return readings
    norm = UnitNormaliser(profile, meters)
    info = norm.meters.drop_duplicates("meter_id").set_index("meter_id")
    out = readings.copy()
    value = out["value"].to_numpy(dtype=np.float64, na_value=np.nan).copy()
    unit = out["unit"].astype(object).to_numpy().copy()
    meter_ids = out["meter_id"].astype(str)
    labels = out["raw_unit"].astype(object).where(out["raw_unit"].notna(), None)
    keys = pd.DataFrame({"m": meter_ids, "u": labels.astype(str)})
    cache: dict[tuple[str, str, str | None], tuple[str, float] | None] = {}
    for (meter_id, _), idx in keys.groupby(["m", "u"], sort=False).indices.items():
        label = labels.iloc[idx[0]]
        if label is None or meter_id not in info.index:
            continue
        row = info.loc[meter_id]
        mtype = row["meter_type"]
        if not isinstance(mtype, str) or mtype not in CANONICAL_UNITS:
            continue
        sub = row["meter_subtype"] if "meter_subtype" in info.columns else None
        sub = sub if isinstance(sub, str) else None
        heat = norm._hv_by_subtype.get(sub, norm._hv) if sub else norm._hv
        ck = (str(label), mtype, sub)
        if ck not in cache:
            try:
                expr = resolve_unit(label, norm._aliases, meter=str(meter_id))
                factor, _ = _group_factor(
                    expr, CANONICAL_UNITS[mtype], heat, label=str(label), meter=str(meter_id)
                )
                cache[ck] = (expr, factor)
            except UnitError:
                cache[ck] = None  # such rows were quarantined by the units stage: kept as is
        found = cache[ck]
        if found is None:
            continue
        expr, factor = found
        value[idx] = value[idx] / factor
        unit[idx] = _EXPORT_SYMBOLS.get(expr, expr)
    out["value"] = value
    out["unit"] = pd.Series(unit, index=out.index, dtype="string")
    return out


def _canonical_meters(meters: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Meters with their canonical ``unit``, and meter id -> why its type is unusable."""
    meters = meters.copy()
    bad_meters: dict[str, str] = {}
    if len(meters):
        mtype = meters["meter_type"].astype("string")
        meters["unit"] = mtype.map(CANONICAL_UNITS).astype("string")
        for idx, mt in mtype.items():
            if pd.isna(mt) or mt not in CANONICAL_UNITS:
                bad_meters[str(meters.at[idx, "meter_id"])] = (
                    f"meter type {mt!r} is not one of {list(CANONICAL_UNITS)}: map it in "
                    "[mapping.meters.value_maps.meter_type]"
                )
    return meters, bad_meters


def _normalise_frame(
    frame: pd.DataFrame,
    info: pd.DataFrame | None,
    cols: tuple[str, ...],
    *,
    aliases: dict[str, str],
    hv: HeatingValue | None,
    hv_by_subtype: dict[str, Any],
    bad_meters: dict[str, str],
) -> tuple[pd.DataFrame, tuple[pd.DataFrame, pd.Series] | None]:
    frame = frame.copy(deep=False)
    meter = frame["meter_id"]
    if not isinstance(meter.dtype, pd.CategoricalDtype):
        meter = meter.astype("category")
    mcats = meter.cat.categories
    mcodes = meter.cat.codes.to_numpy()
    if info is not None:
        mt = info["meter_type"].reindex(mcats).astype(object).to_numpy()
        st = (
            info["meter_subtype"].reindex(mcats).astype(object).to_numpy()
            if "meter_subtype" in info
            else np.full(len(mcats), None, dtype=object)
        )
        mraw = info["raw_unit"].reindex(mcats).astype(object).to_numpy()
    else:
        mt = st = mraw = np.full(len(mcats), None, dtype=object)

    # unit label per row: the row's own unit, else the meter's raw_unit
    if "unit" in frame.columns and frame["unit"].notna().any():
        unit = frame["unit"]
        if not isinstance(unit.dtype, pd.CategoricalDtype):
            unit = unit.astype("category")
        ucats = list(unit.cat.categories)
        ucodes = unit.cat.codes.to_numpy()
        none_code = len(ucats)
        ucodes = np.where(ucodes < 0, none_code, ucodes)
        ucats.append(None)
    else:
        ucats, ucodes = [None], None
        none_code = 0
    # group = (meter code, unit code): one factor per distinct (unit, type, subtype) in practice
    nu = len(ucats)
    if ucodes is None:
        # one unit per meter: the groups are the meter codes themselves (-1, no meter id, is the
        # last group, so ``array[mcodes]`` reads it); which are present is counted in chunks
        nm = len(mcats)
        mruns = _Runs.of(mcodes)
        if mruns is not None:  # the meters present: those of the runs (-1: the last entry)
            present = np.zeros(nm + 1, dtype=bool)
            present[mruns.codes] = True
        else:
            seen = np.zeros(nm + 1, dtype=np.int64)
            for a in range(0, len(mcodes), _CHUNK):
                seen += np.bincount(mcodes[a : a + _CHUNK].astype(np.intp) + 1, minlength=nm + 1)
            present = np.r_[seen[1:], seen[:1]] > 0
        guniq = np.r_[np.arange(nm, dtype=np.int64), -1]
        gcodes = mcodes
        gruns = mruns
    else:
        gkey = mcodes.astype(np.int32) + 1  # -1 (no meter id) -> 0
        gkey *= nu
        gkey += ucodes.astype(np.int32)
        gcodes, gpresent = _dense_factorize(gkey, (len(mcats) + 1) * nu)
        del gkey
        guniq = gpresent - nu  # = meter code * nu + unit code, as before
        present = np.ones(len(guniq), dtype=bool)
        gruns = _Runs.of(gcodes)
        mruns = _Runs.of(mcodes)
    factors = np.full(len(guniq), np.nan)
    labels: list[str | None] = [None] * len(guniq)
    notes: list[str] = [""] * len(guniq)
    reason_of_group: dict[int, str] = {}
    cache: dict[tuple[Any, ...], tuple[float, str]] = {}
    for g, key in enumerate(guniq):
        if not present[g]:
            continue
        mc, uc = divmod(int(key), nu)
        meter_id = str(mcats[mc]) if mc >= 0 else None
        label = ucats[uc] if uc != none_code else mraw[mc] if mc >= 0 else None
        if label is None or (isinstance(label, float) and np.isnan(label)):
            label = mraw[mc] if mc >= 0 else None
        labels[g] = None if label is None or pd.isna(label) else str(label)
        mtype = mt[mc] if mc >= 0 else None
        if meter_id is None or mc < 0:
            reason_of_group[g] = "row has no meter_id"
            continue
        if meter_id in bad_meters:
            reason_of_group[g] = bad_meters[meter_id]
            continue
        if mtype is None or pd.isna(mtype):
            reason_of_group[g] = (
                f"meter {meter_id!r} is not in the meters table, so its type and unit are unknown"
            )
            continue
        subtype = st[mc] if st[mc] is not None and not pd.isna(st[mc]) else None
        ck = (labels[g], mtype, subtype)
        try:
            if ck not in cache:
                expr = resolve_unit(labels[g], aliases, meter=meter_id)
                heat = hv_by_subtype.get(subtype, hv) if subtype else hv
                cache[ck] = _group_factor(
                    expr, CANONICAL_UNITS[mtype], heat, label=str(labels[g]), meter=meter_id
                )
            factors[g], notes[g] = cache[ck]
        except UnitError as exc:
            reason_of_group[g] = str(exc).replace("\n  -> ", ". Fix: ")
            bad_meters.setdefault(meter_id, reason_of_group[g])

    bad_group = np.isnan(factors) & present
    bad_rows = _gather_chunked(bad_group, gcodes, gruns) if bad_group.any() else None
    # new columns are collected and the frame rebuilt without copying (``frame[c] = array``
    # copies the array in pandas 3): raw_value shares the reported values. ``factor`` is one
    # value per group, so it is a categorical over the distinct factors (small codes per row,
    # never a full-length float gather); converted values are multiplied chunk by chunk.
    new: dict[str, Any] = {}
    for c in cols:
        if c not in frame.columns:
            continue
        vals = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        if c == cols[0]:
            if "raw_value" not in frame.columns or frame["raw_value"].isna().all():
                new["raw_value"] = vals
            else:  # rows of sources that set no raw_value (a role, a power of ten) take theirs
                raw = frame["raw_value"].to_numpy(dtype=np.float64, na_value=np.nan)
                if np.isnan(raw).any():
                    new["raw_value"] = np.where(np.isnan(raw), vals, raw)
            if "factor" in frame.columns:  # an earlier factor (powers of ten): per row
                f = _gather_chunked(factors, gcodes, gruns)
                prev = frame["factor"].to_numpy(dtype=np.float64, na_value=np.nan)
                new["factor"] = np.where(np.isnan(prev), f, prev * f)
                del f
            else:
                new["factor"] = _factor_categorical(factors, gcodes, gruns)
        new[c] = _multiply_chunked(vals, factors, gcodes, gruns)
    new["raw_unit"] = _cat_take(labels, gcodes, gruns)
    canon_of_meter = [CANONICAL_UNITS.get(x) if isinstance(x, str) else None for x in mt]
    new["unit"] = _cat_take(canon_of_meter, mcodes, mruns)
    frame = _with_columns(frame, new)
    mm: np.ndarray | None = None
    if any(notes) and "method" in frame.columns:
        method = frame["method"]
        if not isinstance(method.dtype, pd.CategoricalDtype):
            method = method.astype("category")
        note_codes, note_uniq = pd.factorize(pd.Series(notes, dtype=object))
        mcats_m = list(method.cat.categories)
        nnote = len(note_uniq)
        mm = method.cat.codes.to_numpy()
        if len(mcats_m) == 1 and int(mm.min()) == 0:  # one method for every row: per group
            base = str(mcats_m[0])
            texts = [f"{base}; {x}" if x else base for x in notes]
            frame = _with_columns(frame, {"method": _cat_take(texts, gcodes, gruns)})
            mm = None
    if any(notes) and "method" in frame.columns and mm is not None:
        key = mm.astype(np.int32) + 1  # -1 (no method) -> 0
        key *= nnote
        key += note_codes.astype(np.int32)[gcodes]
        combo, present = _dense_factorize(key, (len(mcats_m) + 1) * nnote)
        del key
        texts = []
        for k in present:
            a, b = divmod(int(k) - nnote, nnote)
            base = mcats_m[a] if a >= 0 and a < len(mcats_m) else ""
            texts.append(f"{base}; {note_uniq[b]}" if note_uniq[b] else base)
        frame = _with_columns(frame, {"method": _cat_take(texts, combo)})
    if bad_rows is not None and bad_rows.any():
        reason_arr = np.array([reason_of_group.get(g, "") for g in range(len(guniq))], object)
        rows = frame[bad_rows]
        reasons = pd.Series(reason_arr[gcodes[bad_rows]], index=rows.index)
        return frame[~bad_rows], (rows, reasons)
    return frame, None
