"""Execute every notebook once per test session and share the results between test modules.

``executed()`` runs each ``notebooks/*.ipynb`` in a fresh kernel (nbclient, MPLBACKEND=Agg,
``WORKBENCH_OUT`` pointing at a temporary folder), appends one *probe* cell that prints the
facts the tests assert on (:data:`PROBES`, expressions evaluated in the notebook's namespace),
and caches the result in the process: test_notebooks_run.py and test_notebooks_browser.py share
one execution.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_MARK = "__PROBE__"

#: Per notebook: fact name -> Python expression evaluated after the last cell.
PROBES: dict[str, dict[str, str]] = {
    "01_explore_api": {
        "probe_best": "probe.best['type'] if probe.best else None",
        "declared": "profile.section('paginator')['type']",
        "complete": "all(r.report.complete for r in results.values())",
        "records_match_totals": "all(r.report.records == r.report.reported_total "
        "for r in results.values())",
        "planned": "plan.total_requests",
        "informed": "informed.total_requests",
        "replayed_equal": "offline['meters'].records == live['meters'].records",
        "replayed": "len(offline['meters'].records)",
        "recording_text": "'\\n'.join(f.read_text() for f in recording.iterdir())",
        "explorer_records": "len(records)",
    },
    "02_map_provider": {
        "helper_missing": "helper.missing_required()",
        "helper_agrees": "all(profile.section('mapping')['meters']['fields'].get(c) == p "
        "for c, p in helper.mapping()['fields'].items())",
        "roundtrip": "before == profile.section('mapping')",
        "changed": "changed",
        "findings": "len(findings)",
        "assets": "len(tables.assets)",
        "sites": "len(raw['sites'])",
        "meters": "len(tables.meters)",
        "raw_meters": "len(raw['meters'])",
        "meter_types": "sorted(set(tables.meters['meter_type'].astype(str)))",
        "quarantine": "len(tables.quarantine)",
        "source_ids": "tables.meters['source_id'].astype(str).tolist()",
        "serials": "[m['serial'] for m in raw['meters']]",
        "saved_source_id": "__import__('scaler_workbench').read_profile(saved)"
        ".section('mapping')['meters']['fields'].get('source_id')",
        "workdir": "str(session.workdir)",
    },
    "03_normalise_usage": {
        "units": "sorted(set(normalised.usage['unit']))",
        "unit_quarantine": "len(normalised.quarantine)",
        "worst": "float(worst)",
        "meter_months": "len(reconciliation)",
    },
    "04_validate": {
        "report_exists": "result.report_path is not None and result.report_path.exists()",
        "accepted_or_held": "len(result.accepted.usage) + result.errors['record_key'].nunique() "
        ">= len(tables.usage)",
        "strict_rules": "sorted(set(strict_result.errors['rule']))",
        "released": "len(recheck.released)",
        "held": "int(strict_result.errors['record_key'].nunique())",
    },
    "05_sync_and_export": {
        "first": "(first.mode, first.status)",
        "second": "(second.mode, second.status)",
        "runner_stages": "runner.stages_done",
        "runner_requests": "runner.requests",
        "worst": "float(worst)",
        "gone": "gone",
        "deactivated": "sorted(set(deactivated.iloc[:, :3].astype(str).stack()))",
        "cli_exit": "exit_code",
        "cli_files": "sorted(p.name for p in (session.out / 'cli' / 'export').iterdir())",
    },
    "06_ecostruxure": {
        "environments": "(session.source.name, profile.environment)",
        "token_mode": "oct(token_file.stat().st_mode & 0o777)",
        "token_requests": "client.auth.token_requests - requests_before",
        "rotated": "token_file.read_bytes() != stored_before",
        "window_in_range": "bool(window['updatedAt'].between('2024-01-10T00:00:00Z', "
        "'2024-01-10T02:00:00Z').all())",
        "orphan_unjoined": "bool(window.loc[window['key'] == 'ts-site-paris-unclaimed', "
        "'meter_id'].isna().all())",
        "complete": "all(r.report.complete for r in raw.values())",
        "gas_confirmed": "(factors['Fuel / Natural Gas']['confirmed'], "
        "factors['Fuel / Natural Gas']['factor'], factors['Fuel / Diesel']['confirmed'])",
        "rules": "{k: list(v) for k, v in quarantine.set_index('record_key')"
        "[['rule', 'severity']].apply(tuple, axis=1).items()}",
        "gas": "tuple(tables.meters.set_index('meter_id').loc['site-paris-gas:vol', "
        "['meter_subtype', 'unit']])",
        "worst": "float(worst)",
        "not_imported": "sorted(set(reconciliation.loc[~imported, 'meter_id']))",
        "not_imported_zero": "bool((reconciliation.loc[~imported, 'consumption']"
        ".fillna(0) == 0).all())",
        "posted": "len(stored)",
        "scores_back": "[(s['date'], s['score']) for s in get_performance_scores(client, "
        "'site-paris', types=['monthly'], categories=['energy'])]",
        "registration": "sandbox.provider.registrations.get('site-paris')",
        "errors": "len(result.errors)",
        "accepted_all": "len(result.accepted.usage) == len(tables.usage)",
        "report_rules": "sorted(set(result.accepted.quarantine['rule']))",
        "exported_quarantine": "(session.out / 'export' / 'quarantine.csv').read_text()",
        "exported_meters": "(session.out / 'export' / 'meters.csv').read_text()",
        "secrets": "[sandbox.provider.client_secret, sandbox.provider.client_id]",
    },
}
#: Secrets of the generic sandbox, read the same way in every notebook that starts one.
_SANDBOX_SECRETS = (
    "[str(getattr(session.sandbox.credentials, k)) for k in "
    "('api_key', 'password', 'token', 'client_secret')]"
)


@dataclass
class Executed:
    name: str
    notebook: Any  # nbformat.NotebookNode, probe cell included
    facts: dict[str, Any]
    out: Path


def _probe_source(name: str) -> str:
    exprs = dict(PROBES.get(name, {}))
    exprs.setdefault("secrets", _SANDBOX_SECRETS)
    body = ", ".join(f"{k!r}: ({v})" for k, v in exprs.items())
    return f"import json as _json\nprint({_MARK!r} + _json.dumps({{{body}}}, default=str))"


def mappings_digest() -> dict[str, str]:
    """sha256 of every file under mappings/ (the shipped profiles and workbooks)."""
    import hashlib

    return {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((ROOT / "mappings").rglob("*"))
        if p.is_file()
    }


#: mappings/ before and after the notebooks ran (filled by :func:`executed`).
MAPPINGS: dict[str, dict[str, str]] = {}


@functools.cache
def executed() -> dict[str, Executed]:
    """Run every notebook (once per process); name -> :class:`Executed`."""
    from scaler_workbench.notebook import execute_notebook

    MAPPINGS["before"] = mappings_digest()
    base = Path(tempfile.mkdtemp(prefix="workbench-notebooks-"))
    out: dict[str, Executed] = {}
    for path in NOTEBOOKS:
        target = base / path.stem
        nb = execute_notebook(path, out=target, extra_cells=[_probe_source(path.stem)])
        text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        line = next(x for x in text.splitlines() if x.startswith(_MARK))
        out[path.stem] = Executed(path.stem, nb, json.loads(line[len(_MARK) :]), target)
    MAPPINGS["after"] = mappings_digest()
    return out


def own_cells(nb: Any) -> list[Any]:
    """The notebook's own code cells (the probe cell left out)."""
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and "probe" not in c.get("metadata", {}).get("tags", [])
    ]
