"""The profile a plan runs with: the shipped default, a profile file, and the plan's own overrides.

A plan's `[profile]` table is written in profile syntax (`[profile.timing] tr_max_ms = 800`). Its
values are recorded with the source "plan <file> [profile]", and its errors name the plan's line.
"""
from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import replace
from pathlib import Path

from rig.profile import Profile, ProfileError, load_profile


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def dumps(data: dict) -> str:
    """A nested dict as TOML (tables for dicts of dicts, inline values otherwise)."""
    out: list[str] = []

    def table(d: dict, prefix: tuple):
        plain = {k: v for k, v in d.items() if not isinstance(v, dict) or _leafy(k, v)}
        subs = {k: v for k, v in d.items() if k not in plain}
        if prefix and plain:
            out.append("[" + ".".join(map(_toml_key, prefix)) + "]")
        for k, v in plain.items():
            out.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs.items():
            table(v, prefix + (k,))

    table(data, ())
    return "\n".join(out) + "\n"


def _leafy(key, v) -> bool:
    # a {value, source} pair, or a map-valued leaf (baud characters, register values), stays inline
    return isinstance(v, dict) and ("value" in v or key in ("baud_chars_mode_c", "baud_chars_mode_b",
                                                              "register_values"))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) and not _leafy(k, v) else v
    return out


def profile_for_plan(plan) -> Profile:
    base = {}
    file = None
    if plan.profile_file:
        file = Path(plan.profile_file)
        if not file.is_absolute():
            file = Path(plan.base_dir) / file
        load_profile(file)  # its own errors name it
        base = tomllib.loads(file.read_text(encoding="utf-8"))
    if not plan.profile_overrides:
        return load_profile(file)
    merged = _merge(base, plan.profile_overrides)
    fd, tmp = tempfile.mkstemp(suffix=".toml", prefix="rig-plan-profile-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(dumps(merged))
        try:
            prof = load_profile(tmp)
        except ProfileError as e:
            raise ProfileError(str(e).replace(tmp, f"{plan.path} [profile]")) from None
    finally:
        os.unlink(tmp)
    label = f"plan {plan.path} [profile]"
    sources = {k: s.replace(f"user profile {tmp}", label) for k, s in prof.sources.items()}
    return replace(prof, sources=sources, path=Path(plan.path))
