"""Sync state in SQLite: runs, entity registry, watermarks, accepted data, quarantine, requests.

One file per profile (``[sync] state``), opened in WAL mode so a reader (``scaler-workbench
status``) never blocks a running sync. The schema is versioned with ``PRAGMA user_version`` and
migrated forward on open; a file from a newer workbench is refused with :class:`StateError`.

Tables
------
========================  ====================================================================
``runs``                  one row per sync: start, end, status, mode, counts, errors (JSON)
``entities``              every asset and meter ever seen: first/last seen, ``active`` flag
``watermarks``            per resource: the incremental cursor committed by the last good run
``assets`` ... ``readings``  the accepted canonical rows (schema columns; datetimes as int [ns UTC])
``quarantine``            one row per (table, record_key, rule): ``open`` or ``released``
``quarantine_events``     history of every quarantine row (quarantined, seen again, released)
``requests``              request log: method, redacted URL, status, duration [ms]
``provider_totals``       totals the provider reports (``[reconcile.X]``), canonical units
``resume``                the plan of a sync stopped by the provider's quota (one JSON row)
========================  ====================================================================

Every data change of a run happens in **one transaction** (:meth:`StateStore.transaction`), so a
process killed at any point leaves either the previous state or the new one, never a mixture.
Secrets never reach the file: URLs pass through :func:`~scaler_workbench._secrets.redact_url` and
every text through :func:`~scaler_workbench._secrets.redact`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaler_workbench._secrets import get_logger, redact, redact_url
from scaler_workbench.exceptions import StateError
from scaler_workbench.schema import QUARANTINE, TABLES, Table, coerce_frame, empty_frame

__all__ = ["SCHEMA_VERSION", "Entity", "StateStore"]

log = get_logger(__name__)

_SQL_TYPES = {
    "string": "TEXT",
    "category": "TEXT",
    "float": "REAL",
    "int": "INTEGER",
    "bool": "INTEGER",
    "datetime": "INTEGER",  # nanoseconds since the epoch, UTC: exact and sortable
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _data_table_sql(table: Table) -> str:
    cols = ", ".join(f"{_q(c.name)} {_SQL_TYPES[c.kind]}" for c in table.columns)
    key = ", ".join(_q(k) for k in table.key)
    return f"CREATE TABLE {_q(table.name)} ({cols}, PRIMARY KEY ({key}))"


_V1 = [
    """CREATE TABLE runs (
        run_id INTEGER PRIMARY KEY AUTOINCREMENT,
        profile TEXT NOT NULL,
        environment TEXT,
        mode TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,
        counts TEXT NOT NULL DEFAULT '{}',
        errors TEXT NOT NULL DEFAULT '[]'
    )""",
    """CREATE TABLE entities (
        kind TEXT NOT NULL,
        entity_id TEXT NOT NULL,
        parent_id TEXT,
        first_seen_run INTEGER NOT NULL,
        last_seen_run INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        deactivated_run INTEGER,
        deactivated_at TEXT,
        PRIMARY KEY (kind, entity_id)
    )""",
    """CREATE TABLE watermarks (
        resource TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        run_id INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE quarantine (
        qid INTEGER PRIMARY KEY AUTOINCREMENT,
        "table" TEXT NOT NULL,
        record_key TEXT NOT NULL,
        rule TEXT NOT NULL,
        source_id TEXT,
        stage TEXT NOT NULL,
        severity TEXT NOT NULL,
        reason TEXT NOT NULL,
        record TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        first_run INTEGER NOT NULL,
        last_run INTEGER NOT NULL,
        released_run INTEGER,
        UNIQUE ("table", record_key, rule)
    )""",
    """CREATE TABLE quarantine_events (
        qid INTEGER NOT NULL REFERENCES quarantine(qid),
        run_id INTEGER,
        event TEXT NOT NULL,
        at TEXT NOT NULL,
        note TEXT
    )""",
    """CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        status INTEGER,
        duration_ms REAL,
        at TEXT
    )""",
    "CREATE INDEX requests_run ON requests(run_id)",
    *(_data_table_sql(t) for t in TABLES.values()),
]

_V2 = [
    """CREATE TABLE provider_totals (
        "check" TEXT NOT NULL,
        meter_id TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        provider REAL,
        unit TEXT,
        raw_total REAL,
        raw_unit TEXT,
        note TEXT,
        run_id INTEGER,
        PRIMARY KEY ("check", meter_id, start, "end")
    )""",
    """CREATE TABLE resume (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        run_id INTEGER NOT NULL,
        plan TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
]

#: ``MIGRATIONS[i]`` takes a database from ``user_version == i`` to ``i + 1``.
MIGRATIONS: list[list[str]] = [_V1, _V2]

#: The largest date span [d] each resource's provider accepted after "range too large" answers
#: (issue 15): created where missing, like a column added to schema.py, without a version bump.
_LEARNED_SPANS = """CREATE TABLE IF NOT EXISTS learned_spans (
        resource TEXT PRIMARY KEY,
        max_days INTEGER NOT NULL,
        run_id INTEGER,
        updated_at TEXT NOT NULL
    )"""
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Entity:
    """One registry row: an asset or meter ever seen."""

    kind: str
    entity_id: str
    parent_id: str | None
    first_seen_run: int
    last_seen_run: int
    active: bool


def _ns_or_none(s: pd.Series) -> list[int | None]:
    ts = pd.to_datetime(s, utc=True)
    values = ts.to_numpy(dtype="datetime64[ns]").astype("int64")
    return [None if na else int(v) for v, na in zip(values, ts.isna().to_numpy(), strict=True)]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StateStore:
    """The SQLite state of one profile's syncs.

    Parameters
    ----------
    path : path-like
        The database file; parent folders are created. ``":memory:"`` for a throwaway store.

    Raises
    ------
    StateError
        If the file is locked, corrupt, or written by a newer version of the workbench.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(
                str(path), timeout=30, isolation_level=None, check_same_thread=False
            )
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=FULL")
            self._con.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot open state database {str(path)!r}: {exc}", key=str(path)
            ) from exc
        except OSError as exc:
            raise StateError(f"cannot create state folder for {str(path)!r}: {exc}") from exc
        self._in_tx = False

    # -- lifecycle ------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database is schema version {version}, newer than this workbench "
                f"({SCHEMA_VERSION})",
                hint="Upgrade scaler-workbench, or point [sync] state at a new file.",
            )
        while version < SCHEMA_VERSION:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version]:
                    self._con.execute(statement)
                version += 1
                self._con.execute(f"PRAGMA user_version = {version}")
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        self._con.execute(_LEARNED_SPANS)
        # Columns added to schema.py after the file was created: add them (nullable).
        for table in TABLES.values():
            have = {r[1] for r in self._con.execute(f"PRAGMA table_info({_q(table.name)})")}
            for c in table.columns:
                if c.name not in have:
                    self._con.execute(
                        f"ALTER TABLE {_q(table.name)} ADD COLUMN {_q(c.name)} {_SQL_TYPES[c.kind]}"
                    )

    @property
    def schema_version(self) -> int:
        return int(self._con.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({str(self.path) if self.path else ':memory:'!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StateStore]:
        """One atomic commit point: everything inside is committed together or not at all."""
        if self._in_tx:
            yield self
            return
        try:
            self._con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StateError(f"state database is busy: {exc}") from exc
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        else:
            try:
                self._con.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"could not commit state: {exc}") from exc
        finally:
            self._in_tx = False

    def _execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        try:
            return self._con.execute(sql, params)
        except sqlite3.Error as exc:
            raise StateError(f"state query failed: {exc}") from exc

    # -- runs -----------------------------------------------------------------------------
    def begin_run(self, *, profile: str, environment: str | None, mode: str) -> int:
        """Record the start of a run and return its id. Runs left ``running`` become ``interrupted``."""
        with self.transaction():
            self._execute(
                "UPDATE runs SET status = 'interrupted' WHERE status = 'running'",
            )
            cur = self._execute(
                "INSERT INTO runs (profile, environment, mode, started_at, status) "
                "VALUES (?, ?, ?, ?, 'running')",
                (profile, environment, mode, _now()),
            )
        return int(cur.lastrowid or 0)

    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: Mapping[str, Any] | None = None,
        errors: Iterable[str] = (),
    ) -> None:
        """Record the end of a run: ``status`` (success, partial, failed, ...), counts, errors."""
        with self.transaction():
            self._execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ?, errors = ? "
                "WHERE run_id = ?",
                (
                    _now(),
                    status,
                    redact(json.dumps(dict(counts or {}), sort_keys=True, default=str)),
                    redact(json.dumps([str(e) for e in errors])),
                    run_id,
                ),
            )

    def runs(self, *, limit: int = 20) -> pd.DataFrame:
        """The last ``limit`` runs, newest first."""
        return pd.read_sql_query(
            "SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", self._con, params=(limit,)
        )

    def last_run(self, *, status: str | None = None) -> dict[str, Any] | None:
        sql = "SELECT * FROM runs"
        params: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = ?"
            params = (status,)
        cur = self._execute(sql + " ORDER BY run_id DESC LIMIT 1", params)
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip([d[0] for d in cur.description], row, strict=True))
        out["counts"] = json.loads(out["counts"])
        out["errors"] = json.loads(out["errors"])
        return out

    # -- registry -------------------------------------------------------------------------
    def entities(self, kind: str | None = None, *, active: bool | None = None) -> pd.DataFrame:
        """Registry rows (``kind`` ``asset`` or ``meter``), sorted by kind and id."""
        sql, params = "SELECT * FROM entities WHERE 1=1", list[Any]()
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if active is not None:
            sql += " AND active = ?"
            params.append(int(active))
        return pd.read_sql_query(sql + " ORDER BY kind, entity_id", self._con, params=params)

    def active_ids(self, kind: str) -> set[str]:
        cur = self._execute("SELECT entity_id FROM entities WHERE kind = ? AND active = 1", (kind,))
        return {r[0] for r in cur}

    def upsert_entities(
        self,
        kind: str,
        ids: Iterable[str],
        *,
        run_id: int,
        parents: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Mark ``ids`` as seen in ``run_id``; return the ids that were inactive and came back."""
        now = _now()
        ids = sorted(set(ids))
        parents = parents or {}
        with self.transaction():
            back = [
                r[0]
                for r in self._execute(
                    "SELECT entity_id FROM entities WHERE kind = ? AND active = 0", (kind,)
                )
                if r[0] in set(ids)
            ]
            self._con.executemany(
                "INSERT INTO entities (kind, entity_id, parent_id, first_seen_run, last_seen_run,"
                " first_seen_at, last_seen_at, active) VALUES (?, ?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (kind, entity_id) DO UPDATE SET last_seen_run = excluded.last_seen_run,"
                " last_seen_at = excluded.last_seen_at, parent_id = excluded.parent_id, active = 1,"
                " deactivated_run = NULL, deactivated_at = NULL",
                [(kind, i, parents.get(i), run_id, run_id, now, now) for i in ids],
            )
        return sorted(back)

    def deactivate(self, kind: str, ids: Iterable[str], *, run_id: int) -> None:
        """Set ``active = 0`` on ``ids`` (they vanished from a complete, plausible pull)."""
        now = _now()
        with self.transaction():
            self._con.executemany(
                "UPDATE entities SET active = 0, deactivated_run = ?, deactivated_at = ? "
                "WHERE kind = ? AND entity_id = ? AND active = 1",
                [(run_id, now, kind, i) for i in sorted(set(ids))],
            )

    # -- watermarks -----------------------------------------------------------------------
    def watermarks(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._execute("SELECT resource, value FROM watermarks")}

    def get_watermark(self, resource: str) -> str | None:
        row = self._execute(
            "SELECT value FROM watermarks WHERE resource = ?", (resource,)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_watermark(self, resource: str, value: str, *, run_id: int) -> None:
        with self.transaction():
            self._execute(
                "INSERT INTO watermarks (resource, value, run_id, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (resource) DO UPDATE SET value = excluded.value,"
                " run_id = excluded.run_id, updated_at = excluded.updated_at",
                (resource, value, run_id, _now()),
            )

    # -- learned date spans ---------------------------------------------------------------
    def learned_spans(self) -> dict[str, int]:
        """Resource -> the largest date span [d] its provider accepted (learned earlier)."""
        return {
            str(r[0]): int(r[1])
            for r in self._execute("SELECT resource, max_days FROM learned_spans")
        }

    def set_learned_span(self, resource: str, max_days: int, *, run_id: int | None) -> None:
        """Remember a learned span [d] for ``resource`` (the next run starts from it).

        Parameters
        ----------
        resource : str
            The profile's resource name.
        max_days : int
            The span the provider accepted [d], at least 1.
        run_id : int or None
            The run that learned it.
        """
        with self.transaction():
            self._execute(
                "INSERT INTO learned_spans (resource, max_days, run_id, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (resource) DO UPDATE SET"
                " max_days = excluded.max_days, run_id = excluded.run_id,"
                " updated_at = excluded.updated_at",
                (resource, max(1, int(max_days)), run_id, _now()),
            )

    # -- accepted data --------------------------------------------------------------------
    def write_rows(self, table: str, frame: pd.DataFrame) -> int:
        """Insert or replace ``frame``'s rows of canonical ``table`` by key; return the count."""
        t = TABLES[table]
        if frame.empty:
            return 0
        frame = coerce_frame(frame, t)
        columns = []
        for c in t.columns:
            s = frame[c.name]
            if c.kind == "datetime":
                arr = s.to_numpy(dtype="datetime64[ns]").astype("int64").astype(object)
                arr[s.isna().to_numpy()] = None
            elif c.kind == "float":
                arr = s.to_numpy(dtype=float).astype(object)
                arr[np.isnan(s.to_numpy(dtype=float))] = None
            elif c.kind in ("int", "bool"):
                arr = s.astype("Int64").to_numpy(dtype=object, na_value=None)
            else:
                arr = s.astype(object).to_numpy().copy()
                arr[s.isna().to_numpy()] = None
            columns.append(arr)
        names = ", ".join(_q(c.name) for c in t.columns)
        marks = ", ".join("?" * len(t.columns))
        with self.transaction():
            try:
                self._con.executemany(
                    f"INSERT OR REPLACE INTO {_q(t.name)} ({names}) VALUES ({marks})",
                    zip(*columns, strict=True),
                )
            except sqlite3.Error as exc:
                raise StateError(f"could not store {table} rows: {exc}") from exc
        return len(frame)

    def delete_rows(
        self,
        table: str,
        *,
        meter_ids: Iterable[str] | None = None,
        from_ns: Mapping[str, int] | None = None,
        to_ns: Mapping[str, int] | None = None,
    ) -> int:
        """Delete stored rows of ``table`` (``usage`` by ``start``, ``readings`` by ``timestamp``).

        Parameters
        ----------
        meter_ids : iterable of str, optional
            Meters whose rows go (default: every row of the table).
        from_ns, to_ns : mapping of str to int, optional
            Per meter, delete only rows whose time is in ``[from_ns, to_ns)`` [ns UTC].
        """
        t = TABLES[table]
        time_col = _q("start" if table == "usage" else "timestamp")
        with self.transaction():
            if meter_ids is None:
                return self._execute(f"DELETE FROM {_q(t.name)}").rowcount
            n = 0
            for m in sorted(set(meter_ids)):
                sql, params = f"DELETE FROM {_q(t.name)} WHERE meter_id = ?", list[Any]([m])
                if from_ns and m in from_ns:
                    sql += f" AND {time_col} >= ?"
                    params.append(int(from_ns[m]))
                if to_ns and m in to_ns:
                    sql += f" AND {time_col} < ?"
                    params.append(int(to_ns[m]))
                n += self._execute(sql, params).rowcount
            return n

    def read_table(self, table: str) -> pd.DataFrame:
        """The stored rows of canonical ``table``, in key order, with canonical dtypes."""
        t = TABLES[table]
        order = ", ".join(_q(k) for k in t.key)
        names = ", ".join(_q(c.name) for c in t.columns)
        try:
            frame = pd.read_sql_query(
                f"SELECT {names} FROM {_q(t.name)} ORDER BY {order}", self._con
            )
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise StateError(f"could not read stored {table}: {exc}") from exc
        if frame.empty:
            return empty_frame(t)
        for c in t.columns:
            if c.kind == "datetime":
                frame[c.name] = pd.to_datetime(frame[c.name].astype("Int64"), unit="ns", utc=True)
            elif c.kind == "bool":
                frame[c.name] = frame[c.name].astype("Int64").astype("boolean")
            elif c.kind == "float":
                frame[c.name] = pd.to_numeric(frame[c.name], errors="coerce").astype(float)
        return coerce_frame(frame, t).reset_index(drop=True)

    def table_counts(self) -> dict[str, int]:
        return {
            name: int(self._execute(f"SELECT COUNT(*) FROM {_q(name)}").fetchone()[0])
            for name in TABLES
        }

    # -- quarantine -----------------------------------------------------------------------
    def record_quarantine(self, frame: pd.DataFrame, *, run_id: int) -> dict[str, int]:
        """Upsert quarantine rows (columns of ``schema.QUARANTINE``) seen in ``run_id``.

        A row seen before stays one row (``last_run`` moves on); a released row that comes back
        is re-opened. Every change is appended to ``quarantine_events``. Returns counts of
        ``new``, ``seen_again`` and ``reopened`` rows.
        """
        counts = {"new": 0, "seen_again": 0, "reopened": 0}
        if frame is None or frame.empty:
            return counts
        frame = coerce_frame(frame, QUARANTINE)
        frame = frame.drop_duplicates(["table", "record_key", "rule"], keep="last")
        now = _now()
        with self.transaction():
            for row in frame.itertuples(index=False):  # quarantine rows: few, text only
                values = {
                    c: (None if pd.isna(v) else redact(str(v)))
                    for c, v in zip(frame.columns, row, strict=False)
                }
                found = self._execute(
                    'SELECT qid, status FROM quarantine WHERE "table" = ? AND record_key = ? '
                    "AND rule = ?",
                    (values["table"], values["record_key"], values["rule"]),
                ).fetchone()
                if found is None:
                    cur = self._execute(
                        'INSERT INTO quarantine ("table", record_key, rule, source_id, stage, '
                        "severity, reason, record, status, first_run, last_run) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?)",
                        (
                            values["table"],
                            values["record_key"],
                            values["rule"],
                            values["source_id"],
                            values["stage"],
                            values["severity"],
                            values["reason"],
                            values["record"],
                            run_id,
                            run_id,
                        ),
                    )
                    qid, event = cur.lastrowid, "quarantined"
                    counts["new"] += 1
                else:
                    qid, status = found
                    event = "reopened" if status == "released" else "seen"
                    counts["reopened" if status == "released" else "seen_again"] += 1
                    self._execute(
                        "UPDATE quarantine SET status = 'open', last_run = ?, reason = ?, "
                        "severity = ?, record = ?, released_run = NULL WHERE qid = ?",
                        (run_id, values["reason"], values["severity"], values["record"], qid),
                    )
                self._execute(
                    "INSERT INTO quarantine_events (qid, run_id, event, at, note) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (qid, run_id, event, now, values["reason"]),
                )
        return counts

    def release_quarantine(
        self, qids: Iterable[int], *, run_id: int | None = None, note: str = "released"
    ) -> int:
        """Mark quarantine rows released (history kept). Returns how many were open."""
        now = _now()
        n = 0
        with self.transaction():
            for qid in sorted(set(int(q) for q in qids)):
                cur = self._execute(
                    "UPDATE quarantine SET status = 'released', released_run = ? "
                    "WHERE qid = ? AND status = 'open'",
                    (run_id, qid),
                )
                if cur.rowcount:
                    n += 1
                    self._execute(
                        "INSERT INTO quarantine_events (qid, run_id, event, at, note) "
                        "VALUES (?, ?, 'released', ?, ?)",
                        (qid, run_id, now, redact(note)),
                    )
        return n

    def open_quarantine_ids(
        self, *, tables: Iterable[str] | None = None
    ) -> dict[tuple[str, str, str], int]:
        """``(table, record_key, rule) -> qid`` of open rows (optionally of some tables)."""
        rows = self._execute(
            "SELECT \"table\", record_key, rule, qid FROM quarantine WHERE status = 'open'"
        ).fetchall()
        wanted = None if tables is None else set(tables)
        return {(t, k, r): q for t, k, r, q in rows if wanted is None or t in wanted}

    def quarantine(self, *, status: str | None = "open") -> pd.DataFrame:
        """Quarantine rows (``status`` ``open``, ``released`` or ``None`` for all), sorted by key."""
        sql = "SELECT * FROM quarantine"
        params: tuple[Any, ...] = ()
        if status:
            sql += " WHERE status = ?"
            params = (status,)
        return pd.read_sql_query(
            sql + ' ORDER BY "table", record_key, rule', self._con, params=params
        )

    def quarantine_history(self, qid: int | None = None) -> pd.DataFrame:
        sql = "SELECT * FROM quarantine_events"
        params: tuple[Any, ...] = ()
        if qid is not None:
            sql += " WHERE qid = ?"
            params = (qid,)
        return pd.read_sql_query(sql + " ORDER BY rowid", self._con, params=params)

    # -- provider totals (reconciliation) ------------------------------------------------
    def write_provider_totals(
        self,
        check: str,
        frame: pd.DataFrame,
        *,
        run_id: int,
        replace: bool = True,
        meter_ids: Iterable[str] | None = None,
    ) -> int:
        """Store one check's provider totals (columns of ``reconciliation.PROVIDER_TOTALS_COLUMNS``).

        ``replace``: the check's stored rows go first (all of them, or only those of
        ``meter_ids`` when given: a pull that reached only some meters); otherwise rows are
        upserted by (check, meter, start, end).
        """
        rows = []
        if frame is not None and not frame.empty:
            start = _ns_or_none(frame["start"])
            end = _ns_or_none(frame["end"])
            prov = frame["provider"].to_numpy(dtype=float)
            raw = pd.to_numeric(frame["raw_total"], errors="coerce").to_numpy(dtype=float)
            for i, (m, u, ru, note) in enumerate(
                zip(frame["meter_id"], frame["unit"], frame["raw_unit"], frame["note"], strict=True)
            ):  # provider totals: a few per meter
                if start[i] is None or end[i] is None:
                    continue
                rows.append(
                    (
                        check,
                        str(m),
                        start[i],
                        end[i],
                        None if np.isnan(prov[i]) else float(prov[i]),
                        None if pd.isna(u) else str(u),
                        None if np.isnan(raw[i]) else float(raw[i]),
                        None if pd.isna(ru) else str(ru),
                        None if pd.isna(note) else redact(str(note)),
                        run_id,
                    )
                )
        with self.transaction():
            if replace:
                if meter_ids is None:
                    self._execute('DELETE FROM provider_totals WHERE "check" = ?', (check,))
                else:
                    for m in sorted(set(map(str, meter_ids))):
                        self._execute(
                            'DELETE FROM provider_totals WHERE "check" = ? AND meter_id = ?',
                            (check, m),
                        )
            try:
                self._con.executemany(
                    "INSERT OR REPLACE INTO provider_totals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except sqlite3.Error as exc:
                raise StateError(f"could not store provider totals: {exc}") from exc
        return len(rows)

    def provider_totals(self, check: str | None = None) -> pd.DataFrame:
        """Stored provider totals (``start``/``end`` tz-aware UTC), sorted by key."""
        sql = "SELECT * FROM provider_totals"
        params: tuple[Any, ...] = ()
        if check is not None:
            sql += ' WHERE "check" = ?'
            params = (check,)
        frame = pd.read_sql_query(
            sql + ' ORDER BY "check", meter_id, start, "end"', self._con, params=params
        )
        for c in ("start", "end"):
            frame[c] = pd.to_datetime(frame[c].astype("Int64"), unit="ns", utc=True)
        for c in ("provider", "raw_total"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
        frame["note"] = frame["note"].fillna("").astype(object)
        return frame

    # -- resume plan (quota stops) --------------------------------------------------------
    def resume_plan(self) -> dict[str, Any] | None:
        """The plan a quota-stopped sync left for the next run, or None."""
        row = self._execute("SELECT run_id, plan FROM resume WHERE id = 1").fetchone()
        if row is None:
            return None
        plan = json.loads(row[1])
        plan["stopped_run"] = int(row[0])
        return dict(plan)

    def set_resume_plan(self, plan: Mapping[str, Any] | None, *, run_id: int) -> None:
        """Store (or with None clear) the resume plan; call inside the run's commit."""
        with self.transaction():
            if plan is None:
                self._execute("DELETE FROM resume")
                return
            self._execute(
                "INSERT INTO resume (id, run_id, plan, updated_at) VALUES (1, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET run_id = excluded.run_id,"
                " plan = excluded.plan, updated_at = excluded.updated_at",
                (run_id, redact(json.dumps(dict(plan), sort_keys=True, default=str)), _now()),
            )

    # -- request log ----------------------------------------------------------------------
    def log_requests(self, entries: Iterable[Mapping[str, Any]], *, run_id: int | None) -> int:
        """Append request-log entries (``method``, ``url``, ``status``, ``duration_ms``, ``at``).

        URLs are stored with secrets removed; nothing else of the request is kept.
        """
        rows = [
            (
                run_id,
                str(e.get("method", "GET")).upper(),
                redact_url(str(e.get("url", ""))),
                None if e.get("status") is None else int(e["status"]),
                None if e.get("duration_ms") is None else float(e["duration_ms"]),
                None if e.get("at") is None else str(e["at"]),
            )
            for e in entries
        ]
        if rows:
            with self.transaction():
                self._con.executemany(
                    "INSERT INTO requests (run_id, method, url, status, duration_ms, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        return len(rows)

    def requests(self, run_id: int | None = None) -> pd.DataFrame:
        sql = "SELECT * FROM requests"
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        return pd.read_sql_query(sql + " ORDER BY id", self._con, params=params)
