"""The runner: a plan's cases, step by step, into the store; resumable, stoppable, in parallel per bench.

    run_id = start_run(plan, store)                 # or resume: run_id of an earlier run
    verdict = Runner(plan, store, run_id).run()     # "pass" | "fail" | "error" | "stopped"

Each step is recorded whole when it is over (Store.record_step): a run killed at any moment keeps
every finished step, and a resume runs exactly the missing ones (a step cut off in the middle is
run again from its start; nothing of it had been recorded). Stop conditions and summaries are
computed from the recorded steps, so a resumed run ends exactly as an uninterrupted one.
Ctrl-C asks for a clean stop: the step under way finishes and is recorded, then the run stops
(a second Ctrl-C stops at once). Cases on different benches run in parallel threads.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from rig import _clock
from rig.campaign import record
from rig.campaign.bench import Bench
from rig.campaign.cases import LIBRARY
from rig.campaign.errors import BenchUnsupported, StepSkipped
from rig.campaign.profiles import profile_for_plan
from rig.campaign.registry import RecordedStep, StepContext
from rig.campaign.spec import CaseSpec, Plan
from rig.campaign.store import StepRecord, Store, StoreError
from rig.campaign.timesplit import TimeLedger
from rig.measurement import ERROR, FAIL, INCOMPLETE, SKIPPED, STOPPED, combine

SUMMARY = "summary"
log = logging.getLogger("rig.campaign")


def start_run(plan: Plan, store: Store) -> int:
    """A new run of `plan` in `store`, for a Runner; its id."""
    return store.new_run(plan.name, plan.text, plan.path, plan.base_dir)


class Runner:
    """Runs (or resumes) run `run_id` of `plan` into `store`, each finished step recorded whole (a
    parallel plan: each bench's cases in a thread of their own). `progress`: rich progress bars; `echo`: a line per case
    instead. `stop.set()` asks for a clean stop (what Ctrl-C does)."""

    def __init__(self, plan: Plan, store: Store, run_id: int, *, progress: bool = False, echo=None):
        self.plan = plan
        self.store = store
        self.run_id = run_id
        self.profile = profile_for_plan(plan)
        self.stop = threading.Event()
        self.show_progress = progress
        self.echo = echo            # echo(str): one line per finished case (when no progress bars)
        self._progress = None
        self._lock = threading.Lock()
        self.ledger = TimeLedger()
        self._wire_benches: set[str] = set()

    # -- the whole run ---------------------------------------------------------------------------
    def run(self) -> str:
        """Run every step not yet recorded; the run's verdict ("pass", "fail", "error", or
        "stopped" when it was stopped before its end)."""
        self.store.claim_run(self.run_id)
        record.record_start(self.store, self.run_id, self.plan, self.profile)
        t0, wall0 = _clock.now_ns(), time.time()
        try:
            with self.ledger.watching():
                return self._run()
        finally:
            record.record_time(self.store, self.run_id, self.ledger, t0, _clock.now_ns(), wall0,
                               self._wire_benches)

    def _run(self) -> str:
        groups: dict[str, list[tuple[int, CaseSpec]]] = {}
        for pos, spec in enumerate(self.plan.cases):
            groups.setdefault(spec.bench, []).append((pos, spec))
        status, note = "done", None
        try:
            with self._progress_bars() as bars:
                self._progress = bars
                if self.plan.parallel and len(groups) > 1:
                    with ThreadPoolExecutor(len(groups), thread_name_prefix="bench") as pool:
                        futures = [pool.submit(self._run_bench, name, cases) for name, cases in groups.items()]
                        for f in futures:
                            f.result()
                else:
                    for name, cases in groups.items():
                        self._run_bench(name, cases)
        except KeyboardInterrupt:
            self.stop.set()
            status, note = "stopped", "interrupted at once (second Ctrl-C)"
        if self.stop.is_set():
            status = "stopped"
            note = note or "stopped on request (Ctrl-C); `rig resume` continues"
        verdict = self.verdict()
        self.store.finish_run(self.run_id, status, verdict if status == "done" else None, note)
        return verdict if status == "done" else STOPPED

    def verdict(self) -> str:
        """The run's verdict from its recorded cases: "incomplete" (or "error") while cases are
        missing or unfinished."""
        cases = self.store.cases(self.run_id)
        if len(cases) < len(self.plan.cases) or any(c["status"] != "done" for c in cases):
            return ERROR if any(c["verdict"] == ERROR for c in cases) else INCOMPLETE
        return combine(c["verdict"] for c in cases)

    def _run_bench(self, name: str, cases) -> None:
        bench = None
        try:
            for pos, spec in cases:
                if self.stop.is_set():
                    return
                case = LIBRARY[spec.use]
                steps = spec.steps()
                planned = len(steps) + (1 if case.summary else 0)
                case_id = self.store.ensure_case(self.run_id, spec.key, spec.use, case.clause, case.title,
                                                 spec.bench, pos, planned, spec.params)
                row = next(c for c in self.store.cases(self.run_id) if c["id"] == case_id)
                task = self._task(spec.key, planned)
                if row["status"] == "done":
                    self._advance(task, planned)
                    continue
                if bench is None:
                    bench = Bench(self.plan.benches[name], self.profile).open()
                    record.record_dut(self.store, self.run_id, name, bench)
                verdict = self._run_case(bench, spec, case, case_id, steps, task)
                if verdict is None:
                    return  # stopped
                log.info("run %d: case %s: %s", self.run_id, spec.key, verdict)
                if self.echo is not None:
                    self.echo(f"{verdict:<6} {spec.key}  ({case.clause})")
                if self.plan.stop_on_failure and verdict in (FAIL, ERROR):
                    self.stop.set()
                    return
        except StoreError:       # the store refused a write (disk full): the other benches stop too
            self.stop.set()
            raise
        finally:
            if bench is not None:
                try:
                    record.record_bench(self.store, self.run_id, name, bench)
                    if bench.line is not None:
                        t = self.profile.timing
                        self.ledger.add_wire(bench.line.record(), t.tr_min_fast_ns)
                        self._wire_benches.add(name)
                finally:
                    bench.close()

    # -- one case --------------------------------------------------------------------------------
    def _run_case(self, bench: Bench, spec: CaseSpec, case, case_id: int, steps, task) -> str | None:
        recorded = {s["key"]: s for s in self.store.steps(case_id)}
        history: list[RecordedStep] = []
        stop_reason = None
        skipped = False
        t_case = time.monotonic()
        for position, (key, params) in enumerate(steps):
            if stop_reason is not None:
                break
            if key in recorded:
                history.append(self._recorded(recorded[key]))
                self._advance(task, 1)
            else:
                if self.stop.is_set():
                    return None
                if spec.stop.max_duration_s is not None and time.monotonic() - t_case > spec.stop.max_duration_s:
                    stop_reason = f"max_duration_s {spec.stop.max_duration_s:g} s reached"
                    break
                try:
                    rec = self._run_step(bench, spec, case, key, position, params)
                except StepSkipped as e:      # nothing recorded: the case ends here, skipped
                    stop_reason, skipped = f"not run: {e}", True
                    break
                self.store.record_step(case_id, rec)
                log.debug("run %d: %s [%s]: %s in %.3f s%s", self.run_id, spec.key, key, rec.verdict,
                          rec.finished_at - rec.started_at, f" ({rec.error})" if rec.error else "")
                history.append(RecordedStep(key, rec.params, rec.verdict, rec.measurements))
                self._advance(task, 1)
            stop_reason = self._stop_reason(spec, history)
        if case.summary is not None:
            if SUMMARY in recorded:
                history.append(self._recorded(recorded[SUMMARY]))
            else:
                if self.stop.is_set():
                    return None
                rec = StepRecord(SUMMARY, len(steps), {"of": len(history)}, started_at=time.time())
                ctx = StepContext(bench, dict(spec.params), rec, spec.key)
                try:
                    case.summary(ctx, [h for h in history if h.key != SUMMARY])
                except Exception as e:  # noqa: BLE001 - recorded as the step's error
                    rec.error = f"{type(e).__name__}: {e}"
                rec.finished_at = time.time()
                self.store.record_step(case_id, rec)
                history.append(RecordedStep(SUMMARY, rec.params, rec.verdict, rec.measurements))
            self._advance(task, 1)
        left = len(steps) - sum(1 for h in history if h.key != SUMMARY)
        if left:
            self._advance(task, left)
        verdict = combine(h.verdict for h in history)
        if skipped and not any(h.key != SUMMARY for h in history):
            verdict = SKIPPED
        self.store.finish_case(case_id, "done", verdict,
                               None if stop_reason is None else f"{stop_reason}; {left} step(s) {SKIPPED}")
        return verdict

    def _run_step(self, bench, spec, case, key, position, params) -> StepRecord:
        rec = StepRecord(key, position, params, started_at=time.time())
        ctx = StepContext(bench, params, rec, spec.key)
        try:
            case.run(ctx)
        except StepSkipped:
            raise
        except BenchUnsupported as e:
            rec.error = f"not possible on this bench: {e}"
        except Exception as e:  # noqa: BLE001 - the step's error, recorded; the run goes on
            rec.error = f"{type(e).__name__}: {e}"
            rec.notes["traceback"] = traceback.format_exc(limit=6)
            bench.drop_session()
        rec.finished_at = time.time()
        return rec

    def _recorded(self, row) -> RecordedStep:
        return RecordedStep(row["key"], json.loads(row["params"] or "{}"), row["verdict"],
                            self.store.measurements(row["id"]))

    @staticmethod
    def _stop_reason(spec: CaseSpec, history) -> str | None:
        st = spec.stop
        if st.below is not None and history:
            name, limit = st.below
            v = history[-1].value(name)
            if v is not None and v < limit:
                return f"{name} {v:g} below {limit:g} at step {history[-1].key}"
        if st.max_failures is not None:
            bad = sum(1 for h in history if h.verdict in (FAIL, ERROR))
            if bad >= st.max_failures:
                return f"{bad} failed step(s) (max_failures {st.max_failures})"
        return None

    # -- progress --------------------------------------------------------------------------------
    def _progress_bars(self):
        runner = self

        class _Null:
            def __enter__(self):
                return None

            def __exit__(self, *exc):
                return False

        if not self.show_progress:
            return _Null()
        try:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
        except ImportError:
            return _Null()
        from rich.console import Console
        total = sum(len(c.steps()) + (1 if LIBRARY[c.use].summary else 0) for c in self.plan.cases)
        bars = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=False)

        class _Ctx:
            def __enter__(self_):
                bars.start()
                runner._overall = bars.add_task(f"run {runner.run_id}: {runner.plan.name}", total=total)
                return bars

            def __exit__(self_, *exc):
                bars.stop()
                return False
        return _Ctx()

    def _task(self, name: str, total: int):
        if self._progress is None:
            return None
        with self._lock:
            return self._progress.add_task(name, total=total)

    def _advance(self, task, n: int) -> None:
        if self._progress is None or task is None:
            return
        with self._lock:
            self._progress.advance(task, n)
            self._progress.advance(self._overall, n)
