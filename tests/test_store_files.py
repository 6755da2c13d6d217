"""The store and the files rig reads and writes, without surprises: reading commands never create a
store, a read-only store can be read, a damaged one is named, a full disk ends a run resumably, an
export that fails leaves nothing behind; `rig parse` on empty or 7E1 input; `rig serve`'s wall-clock
times. All as subprocesses, on real files (a full disk: a real tmpfs when this may mount one, and
the file-size limit RLIMIT_FSIZE otherwise, both real conditions the kernel imposes)."""
from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import run_rig as rig
from conftest import start_rig
from rig.campaign.store import StepRecord, Store
from rig.measurement import Measurement

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "rig" / "samples"
READING = (("runs",), ("report", "1"), ("export", "1"), ("resume", "1"), ("run", "--rerun-failed", "1"))

PLAN = """name = "small"
[profile.emulator]
execution_ms = 150
[[case]]
use = "meter/6.6/read"
[[case]]
use = "electrical/levels"
name = "levels/optical"
[[case]]
use = "electrical/levels"
name = "levels/voltage"
params = { interface = "voltage" }
[[case]]
use = "electrical/levels"
name = "levels/current-loop"
params = { interface = "current-loop" }
"""


def small_store(path: Path, runs: int = 1, steps: int = 20) -> Path:
    """A store with `runs` runs of a few recorded steps (written by the Store API, no bench)."""
    with Store(path) as s:
        for _ in range(runs):
            run = s.new_run("demo", 'name = "demo"\n[[case]]\nuse = "meter/6.6/read"\n', None, str(path.parent))
            cid = s.ensure_case(run, "meter/6.6/read", "meter/6.6/read", "§6.6", "t", "embedded", 0, 1, {})
            for i in range(steps):
                s.record_step(cid, StepRecord(f"rep={i}", i, {"rep": i},
                                              [Measurement("tr", 200.0 + i, "ms", 20, 1500, "profile")],
                                              started_at=time.time(), finished_at=time.time()))
            s.finish_case(cid, "done", "pass")
            s.finish_run(run, "done", "pass")
    return path


@contextlib.contextmanager
def read_only(directory: Path):
    """`directory` made read-only as a user meets it: a read-only mount (root ignores file modes),
    else the modes of the directory and its files."""
    if os.geteuid() == 0:
        view = directory.with_name(directory.name + "-ro")
        view.mkdir()
        ok = subprocess.run(["mount", "--bind", str(directory), str(view)], capture_output=True).returncode == 0
        if ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], capture_output=True).returncode:
            subprocess.run(["umount", str(view)])
            ok = False
        if not ok:
            pytest.skip("root without mount: cannot make a read-only directory here")
        try:
            yield view
        finally:
            subprocess.run(["umount", str(view)], check=True)
    else:
        files = list(directory.iterdir())
        for f in files:
            f.chmod(0o444)
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)
            for f in files:
                f.chmod(0o644)


def limit_file_size(nbytes: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


# --- reading commands do not create a store -------------------------------------------------------
@pytest.mark.parametrize("command", READING, ids=[" ".join(c) for c in READING])
def test_reading_commands_do_not_create_a_store(tmp_path, command):
    typo = tmp_path / "typo.sqlite"
    r = rig(*command, "--store", typo, cwd=tmp_path)
    assert r.returncode == 2
    assert f"{typo}: no result store there: the file does not exist" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_only_store_can_be_read_but_not_run_into(tmp_path):
    d = tmp_path / "lab"
    d.mkdir()
    small_store(d / "s.sqlite")
    with read_only(d) as ro:
        store = ro / "s.sqlite"
        r = rig("runs", "--json", "--store", store)
        assert r.returncode == 0, r.stderr
        assert [x["steps"] for x in json.loads(r.stdout)] == [20]
        r = rig("report", "1", "--store", store, "--out", tmp_path / "r.html")
        assert r.returncode == 0, r.stderr
        assert "tr" in (tmp_path / "r.html").read_text()
        r = rig("export", "1", "--store", store, "--out", tmp_path / "csv")
        assert r.returncode == 0, r.stderr
        assert len((tmp_path / "csv" / "measurements.csv").read_text().splitlines()) == 21
        r = rig("run", "-k", "6.6/read", "conformance", "--store", store)
        assert r.returncode == 2 and "read-only" in r.stderr and "Traceback" not in r.stderr


def test_a_damaged_store_is_named_and_not_read(tmp_path):
    store = small_store(tmp_path / "s.sqlite", runs=3)
    data = bytearray(store.read_bytes())
    assert len(data) > 5 * 4096
    data[2 * 4096: 2 * 4096 + 64] = b"\xa5" * 64            # a page's header, scrambled
    store.write_bytes(bytes(data))
    for command in (("runs",), ("report", "1"), ("export", "1"), ("resume", "1")):
        r = rig(*command, "--store", store, "--out" if command[0] in ("report", "export") else "--json",
                *([tmp_path / "out"] if command[0] in ("report", "export") else []))
        assert r.returncode == 2, (command, r.stdout)
        assert f"{store}: the result store is damaged" in r.stderr, (command, r.stderr)
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_store_is_named(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("not a database, some notes\n" * 100)
    r = rig("runs", "--store", f)
    assert r.returncode == 2 and f"{f}: not a result store (not an SQLite database)" in r.stderr
    r = rig("run", "-k", "6.6/read", "conformance", "--store", f)
    assert r.returncode == 2 and "not an SQLite database" in r.stderr
    assert f.read_text().startswith("not a database")


# --- a full disk ---------------------------------------------------------------------------------
def _full_disk_then_resume(tmp_path, store: Path, preexec_fn=None):
    plan = tmp_path / "small.toml"
    plan.write_text(PLAN)
    r = rig("run", "--no-progress", plan, "--store", store, preexec_fn=preexec_fn)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert f"{store}: cannot write the result store" in r.stderr
    assert f"`rig resume 1 --store {store}`" in r.stderr
    return r


def test_a_full_disk_ends_the_run_clearly_and_it_resumes(tmp_path):
    """A real full disk: a small tmpfs (needs the right to mount; skipped without it)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here; the RLIMIT_FSIZE test covers the path")
    try:
        store = mnt / "s.sqlite"
        r = _full_disk_then_resume(tmp_path, store)
        assert "the disk is full" in r.stderr
        before = json.loads(rig("runs", "--json", "--store", store).stdout)
        assert before[0]["status"] == "interrupted" and 1 <= before[0]["steps"] < 4
        # room made: the store moved to a bigger disk, then resumed
        big = tmp_path / "moved.sqlite"
        for suffix in ("", "-wal", "-shm"):
            if Path(str(store) + suffix).exists():
                Path(str(big) + suffix).write_bytes(Path(str(store) + suffix).read_bytes())
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    r = rig("resume", "1", "--no-progress", "--store", big)
    assert r.returncode == 0, r.stdout + r.stderr
    after = json.loads(rig("runs", "--json", "--store", big).stdout)
    assert [(x["status"], x["verdict"], x["steps"]) for x in after] == [("done", "pass", 4)]


def test_a_store_that_cannot_grow_ends_the_run_clearly_and_it_resumes(tmp_path):
    """The file-size limit (RLIMIT_FSIZE): writes past it fail as on a full disk (SQLite says
    'disk I/O error'); the run ends with the resume command, and resumes once the limit is gone."""
    store = tmp_path / "s.sqlite"
    _full_disk_then_resume(tmp_path, store, limit_file_size(250_000))
    before = json.loads(rig("runs", "--json", "--store", store).stdout)
    assert before[0]["status"] == "interrupted" and before[0]["steps"] < 4
    r = rig("resume", "1", "--no-progress", "--store", store)
    assert r.returncode == 0, r.stdout + r.stderr
    after = json.loads(rig("runs", "--json", "--store", store).stdout)
    assert [(x["status"], x["verdict"], x["cases"], x["steps"]) for x in after] == [("done", "pass", 4, 4)]


# --- export ----------------------------------------------------------------------------------------
def test_export_into_a_missing_folder_is_refused(tmp_path):
    store = small_store(tmp_path / "s.sqlite")
    out = tmp_path / "no" / "such" / "dir"
    r = rig("export", "1", "--store", store, "--out", out)
    assert r.returncode == 2 and "no directory" in r.stderr and str(out) in r.stderr
    assert not (tmp_path / "no").exists()


def test_a_failed_export_leaves_no_folder(tmp_path):
    store = small_store(tmp_path / "s.sqlite", steps=1000)
    out = tmp_path / "export"
    # files up to 40 kB (SQLite's 32 kB -shm file fits): the export's steps.csv does not
    r = rig("export", "1", "--store", store, "--out", out, preexec_fn=limit_file_size(40_000))
    assert r.returncode == 2, r.stdout
    assert f"{out}: cannot write the export" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    r = rig("export", "1", "--store", store, "--out", out)     # and it works once it can
    assert r.returncode == 0 and len(r.stdout.split()) == 5


# --- rig parse -------------------------------------------------------------------------------------
def test_parse_of_empty_input_says_so(tmp_path):
    r = rig("parse", "-", stdin="")
    assert r.returncode == 2 and "standard input: empty" in r.stderr
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    r = rig("parse", empty)
    assert r.returncode == 2 and f"{empty}: empty" in r.stderr


def test_parse_of_wire_bytes_without_parity_even_gets_a_hint(tmp_path):
    noisy = SAMPLES / "noisy-session.bin"
    r = rig("parse", noisy)
    assert r.returncode == 1 and "try `--parity even`" in r.stderr
    r = rig("parse", "--parity", "even", noisy)
    assert "--parity even`" not in r.stderr
    seven = tmp_path / "seven-bit.bin"                        # as a UART set to 7E1 hands them over
    seven.write_bytes(bytes(b & 0x7F for b in (SAMPLES / "meter-session.bin").read_bytes()))
    r = rig("parse", seven)
    assert r.returncode == 0 and "hint" not in r.stderr
    garbled = tmp_path / "garbled.bin"                        # 7-bit with errors: still no hint
    garbled.write_bytes(seven.read_bytes()[:-3] + b"\x01\x02\x03")
    r = rig("parse", garbled)
    assert r.returncode == 1 and "hint" not in r.stderr


# --- rig serve: wall-clock times ----------------------------------------------------------------------
def test_serve_logs_wall_clock_times_beside_monotonic_ones(tmp_path):
    prof = tmp_path / "fast.toml"
    prof.write_text("[emulator]\nexecution_ms = 200\n")
    log = tmp_path / "serve.log"
    line = start_rig("line", "--json")
    try:
        paths = json.loads(line.stdout.readline())
        serve = start_rig("serve", "--port", paths["meter_port"], "--profile", prof, "--log-file", log)
        try:
            assert "meter emulator on" in serve.stderr.readline()
            t0 = time.time()
            r = rig("read", "--port", paths["hhu_port"], "--profile", prof, "FOIN")
            assert r.returncode == 0, r.stderr
        finally:
            serve.send_signal(signal.SIGINT)
            out, err = serve.communicate(timeout=30)
        assert serve.returncode == 0, err
    finally:
        line.send_signal(signal.SIGINT)
        line.communicate(timeout=30)
    lines = out.splitlines()
    assert lines and all("[" in x for x in lines)
    for x in lines:
        stamp = datetime.fromisoformat(x.split(" ", 1)[0])
        assert stamp.tzinfo is not None and abs(stamp.timestamp() - t0) < 120, x
    assert any("FOIN" in x or "RIG0000000000001" in x for x in lines)
    logged = log.read_text().splitlines()
    assert sum("serve:" in x for x in logged) == len(lines)
    assert all(datetime.fromisoformat(x.split(" ", 1)[0]).tzinfo is not None for x in logged)
