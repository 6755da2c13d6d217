"""Shared helpers for the tests that run `rig` as a user does: a subprocess of this interpreter."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_rig(*args, timeout=180, cwd=None, env=None, stdin=None, preexec_fn=None) -> subprocess.CompletedProcess:
    """`rig ARGS...` to its end: exit code, standard output and error as text."""
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "rig", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=full_env, input=stdin, preexec_fn=preexec_fn)


def start_rig(*args, cwd=None, env=None) -> subprocess.Popen:
    """`rig ARGS...` in the background (text pipes), for commands that run until stopped."""
    full_env = None if env is None else {**os.environ, **env}
    return subprocess.Popen([sys.executable, "-m", "rig", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=full_env)


@pytest.fixture
def rig_cmd():
    return run_rig
