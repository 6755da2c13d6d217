"""Shared helpers of the tests: `rig` as a user runs it (a subprocess of this interpreter; `rig
serve` once ready; `rig decode` in this process), the quick profile the campaign tests run with,
and waiting for an event with a deadline."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

from rig.deadline import Deadline


def run_rig(*args, timeout=180, cwd=None, env=None, stdin=None, preexec_fn=None, text=True,
            module="rig") -> subprocess.CompletedProcess:
    """`rig ARGS...` to its end: exit code, standard output and error (text, or bytes with
    text=False). `module`: the entry point run with -m (`rig.campaign.cli` for its own `main`)."""
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=text,
                          timeout=timeout, cwd=cwd, env=full_env, input=stdin, preexec_fn=preexec_fn)


def start_rig(*args, cwd=None, env=None, stdin=None, module="rig") -> subprocess.Popen:
    """`rig ARGS...` in the background (text pipes; `stdin` as for Popen), for commands that run
    until stopped or that a test talks to while they run."""
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=full_env)


def start_serve(*args):
    """`rig serve`, once it has its port open (it says so on stderr)."""
    proc = start_rig("serve", *args)
    ready = proc.stderr.readline()
    assert "meter emulator on" in ready, ready + proc.stderr.read()
    return proc


def decode_in_process(argv, capsys):
    """`rig decode ARGV...` in this process (its own argparse parser): (exit code, captured output)."""
    from rig import decode_cli
    ap = argparse.ArgumentParser(prog="rig")
    sub = ap.add_subparsers(dest="command")
    decode_cli.add_parser(sub)
    args = ap.parse_args(["decode", *argv])
    rc = args.func(args)
    return rc, capsys.readouterr()


def quick_profile(execution_ms: int = 100, not_ready_poll_ms: int = 30) -> str:
    """The plan's [profile] tables the campaign tests run with: a manufacturer, and the emulator's
    token execution and the HHU's not-ready polling shortened so a token case takes a fraction of
    a second."""
    return f'''
[profile.identification]
manufacturer = "RIg"
[profile.emulator]
execution_ms = {execution_ms}
[profile.timing]
not_ready_poll_ms = {not_ready_poll_ms}
'''


QUICK = quick_profile()


def wait_for(ready, timeout_s: float = 10.0, what: str | None = None):
    """Poll ready() until it returns something true or `timeout_s` passes; its last value (false on
    time-out), or, with `what`, an AssertionError naming what did not happen."""
    got = Deadline.after(timeout_s).wait(ready)
    if not got and what is not None:
        raise AssertionError(f"timed out waiting for {what}")
    return got
