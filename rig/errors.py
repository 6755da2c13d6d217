"""The root of rig's errors: each CLI catches this one class (exit 2 with the message).

Every error rig raises on purpose derives from RigError, and its message names where: the file and
line, the port, the instrument, the frame, the run. Each also keeps its old standard base
(ValueError, OSError, ...) so code that caught that still does.
"""
from __future__ import annotations


class RigError(Exception):
    """An error rig reports to its user as it is: the message names what and where."""
