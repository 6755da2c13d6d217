"""The profile a plan runs with: the shipped default, a profile file, and the plan's own overrides.

A plan's `[profile]` table is written in profile syntax (`[profile.timing] tr_max_ms = 800`). The
profile loader takes it as overrides: its values are recorded with the source "plan <file>
[profile]", and its errors name the plan's file and line.
"""
from __future__ import annotations

from pathlib import Path

from rig.config_check import Checker
from rig.profile import Profile, ProfileError, load_profile


def profile_for_plan(plan) -> Profile:
    """The profile of `plan` (a rig.campaign.spec.Plan): the default, its profile file (relative to
    the plan), then its [profile] overrides. Raises ProfileError naming the profile file, or the
    plan's file and line for an override."""
    file = None
    if plan.profile_file:
        file = Path(plan.profile_file)
        if not file.is_absolute():
            file = Path(plan.base_dir) / file
        if plan.profile_overrides:
            load_profile(file)      # the file must hold alone, even where the plan overrides it
    where = Checker(plan.path, plan.text, prefix=("profile",), error=ProfileError)
    return load_profile(file, overrides=plan.profile_overrides, overrides_from=where,
                        overrides_label=f"plan {plan.path} [profile]")

