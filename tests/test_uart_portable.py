"""The portable build of rig._uart (RIG_UART_NO_SIMD: the plain C kernel only, no x86 intrinsics; what a
non-x86 machine gets) compiled here from the same generated C source, and checked against the numpy
model and against the installed build, bit for bit.  Compiled at -O1 to keep the run to seconds."""
import importlib.util
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_uart_paths import against_model, captures, run, same

from rig import _uart

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "ext"


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    src = EXT / "uart.c"
    inputs = [EXT / "uart.pyx", *EXT.glob("*.h")]
    if not src.exists() or src.stat().st_mtime < max(p.stat().st_mtime for p in inputs):
        if importlib.util.find_spec("Cython") is None:
            pytest.skip("ext/uart.c is missing or older than ext/uart.pyx and Cython is not installed: "
                        "build the extension first (pip install -e .)")
        from Cython.Build import cythonize
        from setuptools import Extension
        # named as setup.py names it (rig._uart: PyInit__uart), not after the file
        cythonize([Extension("rig._uart", [str(EXT / "uart.pyx")])], quiet=True,
                  compiler_directives={"language_level": 3})
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(cc[0]) is None:
        pytest.skip(f"no C compiler ({cc[0]}) to build the portable decoder")
    out = tmp_path_factory.mktemp("portable") / ("_uart" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [*cc, "-O1", "-shared", "-fPIC", "-DRIG_UART_NO_SIMD=1", "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION",
           f"-I{EXT}", f"-I{sysconfig.get_paths()['include']}", f"-I{np.get_include()}", str(src), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"))
    assert r.returncode == 0, r.stderr[-3000:]
    spec = importlib.util.spec_from_file_location("rig_portable._uart", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_portable_build_has_only_the_plain_kernel(portable):
    assert portable._simd_level(-1) == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(captures())
def test_portable_build_gives_the_model_and_the_installed_result(portable, cap):
    x, fs, baud, cuts, kw = cap
    got = run(x, fs, baud, cuts, -1, mod=portable, **kw)
    against_model(run(x, fs, baud, [], -1, mod=portable, **kw), x, fs, baud, **kw)
    same(got, run(x, fs, baud, [], -1, **kw))
    _uart._simd_level(-1)
