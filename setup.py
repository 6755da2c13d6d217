"""Builds the Cython hot loops in ext/ into extension modules of the rig package.

Every ext/NAME.pyx becomes rig._NAME (framing -> rig._framing, clock -> rig._clock, uart -> rig._uart).
RIG_UART_NO_SIMD=1 in the environment builds the portable decoder: the plain C kernel only, no x86
intrinsics (what a non-x86 machine gets; tests/test_uart_portable.py builds and tests it).
"""
import os
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent

extensions = [
    Extension(
        f"rig._{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[numpy.get_include()],
        extra_compile_args=["-O3"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
        + ([("RIG_UART_NO_SIMD", "1")] if os.environ.get("RIG_UART_NO_SIMD") == "1" else []),
        depends=[str(h.relative_to(HERE)) for h in sorted((HERE / "ext").glob("*.h"))],
    )
    for pyx in sorted((HERE / "ext").glob("*.pyx"))
]

setup(
    # instruments/ (one YAML file per instrument model) sits at the top of the repository and is
    # installed as the package data directory rig/instruments.
    packages=find_packages(include=["rig", "rig.*"]) + ["rig.instruments"],
    package_dir={"rig.instruments": "instruments"},
    package_data={
        "rig": ["profiles/*.toml", "samples/*", "plans/*.toml", "py.typed", "*.pyi", "campaign/templates/*"],
        "rig.instruments": ["*.yaml"],
    },
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
