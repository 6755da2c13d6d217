"""The result store: one SQLite file in WAL mode holding runs, cases, steps and what each step measured.

    store = Store.open("rig-results.sqlite")      # default: $RIG_STORE, else ./rig-results.sqlite
    run = store.new_run(plan)                     # plan text kept, so a resume needs no file
    store.record_step(case_id, StepRecord(...))   # one transaction: the step and all it measured

A step is written whole, in one transaction, once it is over: a run killed at any moment (Ctrl-C,
a crash, SIGKILL) leaves every finished step and nothing half-written; WAL recovery makes the
file open cleanly afterwards. (case, step key) is unique, so no step is ever recorded twice and a
resume runs exactly the steps that are missing.

Tables: runs, cases, steps, measurements (name, value, unit, low, high, verdict, basis),
exchanges (request/answer bytes and their times), captures (zlib-compressed samples, referenced
by step).
"""
from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from rig.errors import RigError
from rig.measurement import ERROR, FAIL, PASS, Measurement, combine

DEFAULT_STORE = "rig-results.sqlite"
SCHEMA_VERSION = 2          # 2: run_record (what was tested and how)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, plan_path TEXT, plan_text TEXT NOT NULL,
    plan_dir TEXT, status TEXT NOT NULL, verdict TEXT, started_at REAL NOT NULL,
    finished_at REAL, pid INTEGER, host TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), key TEXT NOT NULL,
    use TEXT NOT NULL, clause TEXT, title TEXT, bench TEXT, position INTEGER NOT NULL,
    planned_steps INTEGER, params TEXT, status TEXT NOT NULL, verdict TEXT, stop_reason TEXT,
    UNIQUE (run_id, key));
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(id), key TEXT NOT NULL,
    position INTEGER NOT NULL, params TEXT, verdict TEXT NOT NULL, error TEXT, notes TEXT,
    started_at REAL, finished_at REAL,
    UNIQUE (case_id, key));
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY, step_id INTEGER NOT NULL REFERENCES steps(id), seq INTEGER NOT NULL,
    name TEXT NOT NULL, value REAL, unit TEXT, low REAL, high REAL, verdict TEXT NOT NULL, basis TEXT);
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY, step_id INTEGER NOT NULL REFERENCES steps(id), seq INTEGER NOT NULL,
    name TEXT, request BLOB, answer BLOB, answer_kind TEXT,
    request_start_ns INTEGER, request_end_ns INTEGER, answer_first_ns INTEGER, answer_last_ns INTEGER,
    tr_ns INTEGER, max_ta_ns INTEGER, attempts INTEGER, naks_sent INTEGER, naks_received INTEGER,
    ok INTEGER, errors TEXT, recovered TEXT);
CREATE TABLE IF NOT EXISTS captures (
    id INTEGER PRIMARY KEY, step_id INTEGER NOT NULL REFERENCES steps(id), name TEXT NOT NULL,
    option TEXT, sample_rate REAL, n_samples INTEGER, dtype TEXT, encoding TEXT NOT NULL,
    data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS run_record (
    run_id INTEGER NOT NULL REFERENCES runs(id), key TEXT NOT NULL, value TEXT NOT NULL,
    recorded_at REAL NOT NULL, PRIMARY KEY (run_id, key));
CREATE INDEX IF NOT EXISTS steps_case ON steps(case_id);
CREATE INDEX IF NOT EXISTS meas_step ON measurements(step_id);
CREATE INDEX IF NOT EXISTS exch_step ON exchanges(step_id);
CREATE INDEX IF NOT EXISTS capt_step ON captures(step_id);
"""


class StoreError(RigError):
    """A store that cannot be opened or does not hold what was asked for; names the file."""


class StoreWriteError(StoreError):
    """A write the store refused (disk full, I/O error, read-only): nothing of it was kept, all
    before it was; the run can be resumed once the cause is fixed."""


def default_path() -> str:
    """The store `rig` uses when none is named: $RIG_STORE, else ./rig-results.sqlite."""
    return os.environ.get("RIG_STORE") or DEFAULT_STORE


@dataclass
class Capture:
    """Samples kept with a step (a scope capture, real or synthesised)."""
    name: str
    samples: object                 # numpy array
    sample_rate: float
    option: str = ""


@dataclass
class StepRecord:
    """What one step produced. The verdict is computed: error if it could not be carried out,
    fail if any measurement failed, else pass."""
    key: str
    position: int
    params: dict = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    exchanges: list = field(default_factory=list)      # rig.exchange.Exchange
    captures: list[Capture] = field(default_factory=list)
    error: str | None = None
    notes: dict = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def verdict(self) -> str:
        """error, else the measurements' verdicts combined (combine)."""
        if self.error:
            return ERROR
        return combine(m.verdict for m in self.measurements)


class Store:
    """The SQLite result store. Thread-safe: one connection, every write under a lock."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, read_only: bool = False):
        """create: make the file when it is not there (`rig run`); else a missing store is an error.
        read_only: for the reading commands (runs, report, export): never writes, so a store on a
        read-only disk or of another user can be read."""
        self.path = str(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self.db = _connect(self.path, create=create, read_only=read_only)
        self.db.row_factory = sqlite3.Row

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True,
             read_only: bool = False) -> "Store":
        """The store at `path`, or at default_path()."""
        return cls(path or default_path(), create=create, read_only=read_only)

    def close(self) -> None:
        """Close the connection (every write is committed when made)."""
        with self._lock:
            self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------
    def _tx(self):
        store = self

        class _T:
            def __enter__(self_):
                store._lock.acquire()
                try:
                    store.db.execute("BEGIN IMMEDIATE")
                except sqlite3.DatabaseError as e:
                    store._lock.release()
                    raise _write_error(store.path, e) from None
                return store.db

            def __exit__(self_, et, ev, tb):
                try:
                    if et is None:
                        try:
                            store.db.execute("COMMIT")
                            return
                        except sqlite3.DatabaseError as e:
                            ev = e
                    if store.db.in_transaction:
                        try:
                            store.db.execute("ROLLBACK")
                        except sqlite3.DatabaseError:
                            pass  # SQLite rolled it back itself
                    if isinstance(ev, sqlite3.DatabaseError):
                        raise _write_error(store.path, ev) from None
                finally:
                    store._lock.release()
        return _T()

    def new_run(self, name: str, plan_text: str, plan_path: str | None, plan_dir: str | None) -> int:
        """A new run of the plan (its text kept whole, for resume and the record), running in this process; its id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (name, plan_path, plan_text, plan_dir, status, started_at, pid, host) "
                "VALUES (?, ?, ?, ?, 'running', ?, ?, ?)",
                (name, plan_path, plan_text, plan_dir, time.time(), os.getpid(), socket.gethostname()))
            return cur.lastrowid

    def claim_run(self, run_id: int) -> None:
        """This process now runs it (a resume)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status='running', pid=?, host=?, finished_at=NULL WHERE id=?",
                       (os.getpid(), socket.gethostname(), run_id))

    def finish_run(self, run_id: int, status: str, verdict: str | None, note: str | None = None) -> None:
        """Record the run's end: its status (done, stopped, ...), its verdict when done, and why (note)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status=?, verdict=?, finished_at=?, note=? WHERE id=?",
                       (status, verdict, time.time(), note, run_id))

    def set_control(self, run_id: int, control: dict) -> None:
        """How the run was asked for beyond its plan: {"cases": the case keys selected (all: absent),
        "then": the plans to run after it, [{path, text, base_dir}]}, for `rig resume`."""
        with self._tx() as db:
            db.execute("UPDATE runs SET control=? WHERE id=?", (_json(control), run_id))

    def control(self, run_id: int) -> dict:
        """What set_control kept for the run ({} when nothing)."""
        row = self.run(run_id)
        text = row["control"] if "control" in row.keys() else None
        return json.loads(text) if text else {}

    def ensure_case(self, run_id: int, key: str, use: str, clause: str, title: str, bench: str,
                    position: int, planned_steps: int, params: dict) -> int:
        """The id of the run's case `key`, made on its first call (a resume finds the one it made)."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM cases WHERE run_id=? AND key=?", (run_id, key)).fetchone()
            if row is not None:
                db.execute("UPDATE cases SET planned_steps=? WHERE id=?", (planned_steps, row[0]))
                return row[0]
            cur = db.execute(
                "INSERT INTO cases (run_id, key, use, clause, title, bench, position, planned_steps, params, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                (run_id, key, use, clause, title, bench, position, planned_steps, _json(params)))
            return cur.lastrowid

    def finish_case(self, case_id: int, status: str, verdict: str | None, stop_reason: str | None = None) -> None:
        """Record a case's end: status, verdict, and why it stopped early (a stop condition, a skip)."""
        with self._tx() as db:
            db.execute("UPDATE cases SET status=?, verdict=?, stop_reason=? WHERE id=?",
                       (status, verdict, stop_reason, case_id))

    def record_step(self, case_id: int, step: StepRecord) -> int:
        """Write a finished step with everything it produced, all or nothing."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO steps (case_id, key, position, params, verdict, error, notes, started_at, finished_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, step.key, step.position, _json(step.params), step.verdict, step.error,
                 _json(step.notes), step.started_at, step.finished_at))
            sid = cur.lastrowid
            db.executemany(
                "INSERT INTO measurements (step_id, seq, name, value, unit, low, high, verdict, basis) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, i, m.name, _num(m.value), m.unit, m.low, m.high, m.verdict, m.basis)
                 for i, m in enumerate(step.measurements)])
            db.executemany(
                "INSERT INTO exchanges (step_id, seq, name, request, answer, answer_kind, request_start_ns, "
                "request_end_ns, answer_first_ns, answer_last_ns, tr_ns, max_ta_ns, attempts, naks_sent, "
                "naks_received, ok, errors, recovered) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(sid, i, e.name, bytes(e.request), bytes(e.answer), e.answer_kind, e.request_start_ns,
                  e.request_end_ns, e.answer_first_ns, e.answer_last_ns, e.tr_ns, e.max_ta_ns, e.attempts,
                  e.naks_sent, e.naks_received, int(e.ok), _json(e.errors), _json(e.recovered))
                 for i, e in enumerate(step.exchanges)])
            for c in step.captures:
                blob, dtype, n = _compress(c.samples)
                db.execute("INSERT INTO captures (step_id, name, option, sample_rate, n_samples, dtype, encoding, data) "
                           "VALUES (?, ?, ?, ?, ?, ?, 'zlib+npy', ?)", (sid, c.name, c.option, c.sample_rate, n, dtype, blob))
            return sid

    # -- reading ------------------------------------------------------------------------------------
    def run(self, run_id: int) -> sqlite3.Row:
        """The run's row; StoreError when the store has no such run."""
        row = self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no run {run_id} (see `rig runs`)")
        return row

    def runs(self) -> list[dict]:
        """Every run with its case and step counts, as `rig runs` lists them (a run whose process is
        gone shows as interrupted)."""
        out = []
        for r in self.db.execute("SELECT * FROM runs ORDER BY id"):
            d = dict(r)
            d.pop("plan_text")
            d.pop("control", None)
            if d["status"] == "running" and not _alive(d["pid"], d["host"]):
                d["status"] = "interrupted"
            c = self.db.execute(
                "SELECT count(*), sum(verdict=?), sum(verdict=?), sum(verdict=?) FROM cases WHERE run_id=?",
                (PASS, FAIL, ERROR, r["id"])).fetchone()
            d.update(cases=c[0], passed=c[1] or 0, failed=c[2] or 0, errors=c[3] or 0)
            d["steps"] = self.db.execute(
                "SELECT count(*) FROM steps JOIN cases ON steps.case_id=cases.id WHERE run_id=?", (r["id"],)).fetchone()[0]
            out.append(d)
        return out

    def cases(self, run_id: int) -> list[dict]:
        """The run's cases in plan order."""
        return [dict(r) for r in self.db.execute("SELECT * FROM cases WHERE run_id=? ORDER BY position", (run_id,))]

    def steps(self, case_id: int) -> list[dict]:
        """The case's recorded steps in order."""
        return [dict(r) for r in self.db.execute("SELECT * FROM steps WHERE case_id=? ORDER BY position", (case_id,))]

    def step_keys(self, case_id: int) -> set[str]:
        """The keys of the case's recorded steps (what a resume skips)."""
        return {r[0] for r in self.db.execute("SELECT key FROM steps WHERE case_id=?", (case_id,))}

    def measurements(self, step_id: int) -> list[Measurement]:
        """The step's measurements, verdicts judged again from their values and limits."""
        return [Measurement(r["name"], r["value"], r["unit"], r["low"], r["high"], r["basis"])
                for r in self.db.execute("SELECT * FROM measurements WHERE step_id=? ORDER BY seq", (step_id,))]

    def capture(self, capture_id: int):
        """(samples, sample rate) of a stored capture."""
        r = self.db.execute("SELECT * FROM captures WHERE id=?", (capture_id,)).fetchone()
        if r is None:
            raise StoreError(f"{self.path}: no capture {capture_id}")
        import numpy as np
        return np.load(io.BytesIO(zlib.decompress(r["data"])), allow_pickle=False), r["sample_rate"]

    # -- the run's record: what was tested and how (schema 2) ---------------------------------------
    def set_record(self, run_id: int, key: str, value) -> None:
        """Keep one item of the run's record (rig, plan, profile, bench.NAME, dut.NAME, time, ...)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO run_record (run_id, key, value, recorded_at) VALUES (?, ?, ?, ?)",
                       (run_id, key, _json(value), time.time()))

    def record(self, run_id: int) -> dict:
        """The run's record, key -> value; empty for a run stored before schema 2 (nothing was kept)."""
        try:
            rows = self.db.execute("SELECT key, value FROM run_record WHERE run_id=? ORDER BY key", (run_id,))
            return {k: json.loads(v) for k, v in rows}
        except sqlite3.OperationalError as e:       # an old store opened read-only: no such table
            if "no such table" in str(e):
                return {}
            raise

    # -- queries for the reports ----------------------------------------------------------------------
    def exchanges(self, step_id: int) -> list[dict]:
        """A step's exchanges in order (bytes, times, attempts, NAKs, errors)."""
        return [dict(r) for r in self.db.execute("SELECT * FROM exchanges WHERE step_id=? ORDER BY seq", (step_id,))]

    def run_exchanges(self, run_id: int) -> list[dict]:
        """Every exchange of a run with its case and bench, in order (times and sizes; no bytes)."""
        return [dict(r) for r in self.db.execute(
            "SELECT c.key AS case_key, c.bench, c.use, s.id AS step_id, s.key AS step_key, e.seq, e.name, "
            "length(e.request) AS request_len, length(e.answer) AS answer_len, e.request_start_ns, "
            "e.request_end_ns, e.answer_first_ns, e.answer_last_ns, e.tr_ns, e.ok "
            "FROM exchanges e JOIN steps s ON e.step_id=s.id JOIN cases c ON s.case_id=c.id "
            "WHERE c.run_id=? ORDER BY c.position, s.position, e.seq", (run_id,))]

    def table(self, run_id: int, name: str) -> tuple[list[str], list[tuple]]:
        """Rows of one table for a run, flattened with the case and step they belong to (for export)."""
        q = {
            "cases": "SELECT c.* FROM cases c WHERE c.run_id=? ORDER BY c.position",
            "steps": "SELECT c.key AS case_key, c.use, c.clause, s.id, s.key, s.position, s.params, s.verdict, "
                     "s.error, s.notes, s.started_at, s.finished_at FROM steps s JOIN cases c ON s.case_id=c.id "
                     "WHERE c.run_id=? ORDER BY c.position, s.position",
            "measurements": "SELECT c.key AS case_key, c.clause, s.key AS step_key, s.params AS step_params, "
                            "m.name, m.value, m.unit, m.low, m.high, m.verdict, m.basis FROM measurements m "
                            "JOIN steps s ON m.step_id=s.id JOIN cases c ON s.case_id=c.id WHERE c.run_id=? "
                            "ORDER BY c.position, s.position, m.seq",
            "exchanges": "SELECT c.key AS case_key, s.key AS step_key, e.seq, e.name, e.request, e.answer, "
                         "e.answer_kind, e.request_start_ns, e.request_end_ns, e.answer_first_ns, e.answer_last_ns, "
                         "e.tr_ns, e.max_ta_ns, e.attempts, e.naks_sent, e.naks_received, e.ok, e.errors, e.recovered "
                         "FROM exchanges e JOIN steps s ON e.step_id=s.id JOIN cases c ON s.case_id=c.id "
                         "WHERE c.run_id=? ORDER BY c.position, s.position, e.seq",
            "captures": "SELECT c.key AS case_key, s.key AS step_key, k.id, k.name, k.option, k.sample_rate, "
                        "k.n_samples, k.dtype, k.encoding FROM captures k JOIN steps s ON k.step_id=s.id "
                        "JOIN cases c ON s.case_id=c.id WHERE c.run_id=? ORDER BY c.position, s.position",
        }[name]
        cur = self.db.execute(q, (run_id,))
        return [d[0] for d in cur.description], [tuple(r) for r in cur.fetchall()]


def _connect(path: str, *, create: bool, read_only: bool) -> sqlite3.Connection:
    """Open (or, with create, make) a store; refuses a missing file, a file that is not SQLite or
    not a rig store, and a damaged one (SQLite's quick_check), naming the file."""
    p = Path(path)
    if not create and not p.exists():
        raise StoreError(f"{path}: no result store there: the file does not exist "
                         "(--store or $RIG_STORE names the store)")
    if p.is_dir():
        raise StoreError(f"{path}: a directory, not a result store")
    if create and not read_only and not p.parent.is_dir():
        raise StoreError(f"{path}: cannot make the result store: no directory {str(p.parent)!r}")
    if not read_only and p.exists() and not (os.access(p, os.W_OK) and os.access(p.resolve().parent, os.W_OK)):
        raise StoreError(f"{path}: the result store is read-only (or its directory is): a run cannot be "
                         "recorded there (`rig runs`, `rig report`, `rig export` can read it)")
    uri = "file:" + urllib.parse.quote(str(p.resolve())) + "?mode=" + ("ro" if read_only else "rwc" if create else "rw")
    try:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30, isolation_level=None)
        if read_only:
            try:
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            except sqlite3.OperationalError as e:
                if "unable to open" not in str(e):
                    raise
                # a WAL store on a read-only disk, closed cleanly (no -shm file, none can be made):
                # nobody can write it, so SQLite may read it as immutable
                db.close()
                db = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False,
                                     isolation_level=None)
    except sqlite3.DatabaseError as e:
        raise _open_error(path, e) from None
    try:
        _check_whole(db, path)
        if read_only:
            if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone() is None:
                raise StoreError(f"{path}: an SQLite file, but not a rig result store (no runs table)")
            return db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        _migrate(db)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    except StoreError:
        db.close()
        raise
    except sqlite3.DatabaseError as e:
        db.close()
        if "readonly" in str(e) or "read-only" in str(e):
            raise StoreError(f"{path}: the result store is read-only: a run cannot be recorded there "
                             "(`rig runs`, `rig report`, `rig export` can read it)") from None
        raise StoreError(f"{path}: cannot open the result store: {e}") from None
    return db


def _check_whole(db: sqlite3.Connection, path: str) -> None:
    """SQLite's own check of the file's structure (PRAGMA quick_check): a damaged store is named
    and refused, never read as if whole."""
    try:
        rows = [r[0] for r in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as e:
        raise _open_error(path, e) from None
    if rows != ["ok"]:
        raise StoreError(f"{path}: the result store is damaged (SQLite quick_check: {'; '.join(rows)}); "
                         "restore it from a copy (`sqlite3 FILE .recover` may save what is left)")


def _open_error(path: str, e: sqlite3.DatabaseError) -> StoreError:
    if "not a database" in str(e):
        return StoreError(f"{path}: not a result store (not an SQLite database)")
    if "malformed" in str(e) or "corrupt" in str(e):
        return StoreError(f"{path}: the result store is damaged: SQLite cannot read it ({e}); "
                          "restore it from a copy (`sqlite3 FILE .recover` may save what is left)")
    return StoreError(f"{path}: cannot open the result store: {e}")


def _migrate(db: sqlite3.Connection) -> None:
    """What changed since schema version 1 (an older store gains it when opened for writing)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    if "control" not in cols:   # JSON: the case selection of the run, the plans to run after it
        db.execute("ALTER TABLE runs ADD COLUMN control TEXT")
    # schema 2 only adds run_record (made by _SCHEMA's CREATE ... IF NOT EXISTS): old runs read as before
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is not None and int(row[0]) < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))


def _write_error(path: str, e: sqlite3.DatabaseError) -> StoreWriteError:
    text = str(e)
    why = ("the disk is full" if "full" in text else
           "the store is read-only" if "readonly" in text else
           "a disk I/O error (the disk may be full, or the file too large)" if "I/O" in text else text)
    return StoreWriteError(f"{path}: cannot write the result store: {why} (SQLite: {text})")


def _json(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _num(v):
    if v is None or isinstance(v, (int, float)):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _compress(samples) -> tuple[bytes, str, int]:
    import numpy as np
    a = np.asarray(samples)
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    # level 1: a noisy float capture shrinks little more at 6 (captures 20 % smaller) and takes 6x
    # the time, which was a quarter of the electrical plan's overhead
    return zlib.compress(buf.getvalue(), 1), str(a.dtype), int(a.size)


def _alive(pid, host) -> bool:
    if not pid or host != socket.gethostname():
        return True  # cannot tell from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_alive(row) -> bool:
    """Whether the process running the run in `row` (pid, host) is alive; True when this host
    cannot tell (another host)."""
    return _alive(row["pid"], row["host"])


def path_of(store: Store) -> Path:
    """The store's file."""
    return Path(store.path)
