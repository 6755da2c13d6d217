"""The Cython module rig._framing (ext/framing.pyx), for the type checker: its names untyped (Any), a full
stub would copy the .pyx's signatures by hand."""
from typing import Any

def __getattr__(name: str) -> Any: ...
