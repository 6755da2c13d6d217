"""Every example in README.md, run as a user would (from a scratch directory, the repository's
samples at hand). Each fenced block and each indented block gets a checker; a block no checker
recognises fails the test, so a new example cannot go untested.

Examples that need hardware (a meter on /dev/ttyUSB0, a bench) or change the machine (`sudo`,
`pip install`) are not run: their `rig` commands are checked to parse (the same argparse the
command uses), plans with `rig check`, and where the README shows their output, the same command is
run against the embedded default (as the README says that output is) and compared.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_rig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


@dataclass
class Block:
    line: int           # 1-based line of its first content line
    kind: str           # the fence's language ("" for an indented block)
    text: str

    @property
    def first(self) -> str:
        return self.text.splitlines()[0]


def blocks(text: str) -> list[Block]:
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            out.append(Block(i + 2, m.group(1) or "text", "\n".join(lines[i + 1:j])))
            i = j + 1
            continue
        if lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or (not lines[j].strip() and j + 1 < len(lines)
                                                                       and lines[j + 1].startswith("    "))):
                j += 1
            out.append(Block(i + 1, "", "\n".join(x[4:] for x in lines[i:j])))
            i = j
            continue
        i += 1
    return out


BLOCKS = blocks(README.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A scratch directory for the README's files, with its own result store."""
    d = tmp_path_factory.mktemp("readme")
    (d / "rig").symlink_to(ROOT / "rig")          # `rig/samples/...` as from a checkout
    return d


def rig(work, *args, **kw):
    return run_rig(*args, cwd=work, env={"RIG_STORE": str(work / "rig-results.sqlite"), "NO_COLOR": "1"}, **kw)


def parses(argv: list[str]) -> None:
    """The command line is one `rig` accepts (argparse exits 2 otherwise)."""
    from rig.cli import build_parser
    assert argv[0] == "rig", argv
    build_parser().parse_args(argv[1:])


def norm(line: str, numbers: bool = True) -> str:
    s = " ".join(line.split())
    return re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "N", s) if numbers else s


def same_lines(shown: list[str], actual: str, numbers: bool = True, subset: bool = False) -> None:
    got = [norm(x, numbers) for x in actual.splitlines() if x.strip()]
    want = [norm(x, numbers) for x in shown if x.strip()]
    if subset:
        missing = [w for w in want if w not in got]
        assert not missing, f"README lines not in the output: {missing}\noutput:\n{actual}"
    else:
        assert want == got[:len(want)], f"README:\n{want}\noutput:\n{got}"


# --- the checkers --------------------------------------------------------------------------------------
def check_synopsis(work, b: Block) -> bool:
    """`rig CMD [--opt ...]` lines: every option they show is one the command takes."""
    lines = b.text.splitlines()
    if not all(x.startswith("rig ") for x in lines) or not any(re.search(r"\[|\||[A-Z]{3,}", x) for x in lines):
        return False
    for x in lines:
        for part in x.split(" | "):
            words = part.split()
            sub = [w for w in words[1:3] if re.fullmatch(r"[a-z]+", w)]
            helptext = rig(work, *sub, "--help").stdout
            assert "usage: rig" in helptext, part
            for opt in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", part):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}\b", helptext), f"{part}: {opt} not in `rig {' '.join(sub)} --help`"
    return True


RUNNABLE = ("rig check ", "rig run --dry-run", "rig init ", "rig run --case ", "rig run --rerun-failed ")


def check_commands(work, b: Block) -> bool:
    """Plain `rig ...` command lines that run here (checks, dry runs, init, small runs)."""
    lines = b.text.splitlines()
    if not all(x.startswith(RUNNABLE) for x in lines):
        return False
    for x in lines:
        argv = shlex.split(x)
        parses(argv)
        if argv[1] == "init":
            (work / argv[-1]).unlink(missing_ok=True)
        r = rig(work, *argv[1:], "--no-progress" if argv[1] == "run" and "--dry-run" not in argv else "--quiet",
                timeout=600)
        assert r.returncode == 0, (x, r.stdout, r.stderr)
    return True


def check_shell(work, b: Block) -> bool:
    """```sh blocks of the walk-through."""
    if b.kind != "sh":
        return False
    for x in b.text.splitlines():
        cmd = x.split("#")[0].strip()
        if cmd.startswith(("sudo ", "ls -l /dev/serial")):
            continue          # changes the machine, or needs a probe plugged in: not run
        argv = shlex.split(cmd)
        if argv[0] == "rig":
            r = rig(work, *argv[1:], "--force")
        else:
            assert argv[:2] == ["python", "-m"], cmd
            r = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=60, cwd=work)
        assert r.returncode == 0, (cmd, r.stderr)
    return True


def check_toml(work, b: Block) -> bool:
    text = b.text
    if b.kind not in ("toml", "") or not re.search(r"^\[[\w.\[\]]+\]\s*$", text, re.M):
        return False
    name = re.match(r"#\s*([\w.-]+\.toml)", text)
    f = work / (name.group(1) if name else f"block-{b.line}.toml")
    if "[[case]]" in text:
        if "my-meter-profile.toml" in text and not (work / "my-meter-profile.toml").exists():
            assert rig(work, "init", "profile", "my-meter-profile.toml").returncode == 0
        f.write_text(text)
        r = rig(work, "check", f.name)
        assert r.returncode == 0, r.stderr
    elif re.search(r"^\[(bench|instruments\.)", text, re.M):
        from rig.bench.config import load_bench
        f = work / f"bench-{b.line}.toml"
        f.write_text(text)
        load_bench(f)
    else:
        from rig.profile import load_profile
        f = work / f"profile-{b.line}.toml"     # not over a plan of the same name
        f.write_text(text)
        load_profile(f)
    return True


def check_python(work, b: Block) -> bool:
    if b.kind != "python":
        return False
    f = work / f"example_{b.line}.py"
    f.write_text(b.text + "\n")
    if "def test_" in b.text:     # a test file for the pytest plugin: run by pytest
        f = f.rename(work / f"test_example_{b.line}.py")
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f.name],
                           capture_output=True, text=True, timeout=300, cwd=work)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "failed" not in r.stdout and "passed" in r.stdout
    else:
        r = subprocess.run([sys.executable, f.name], capture_output=True, text=True, timeout=300, cwd=work)
        assert r.returncode == 0, r.stderr
    return True


def check_session(work, b: Block) -> bool:
    """`$ rig ...` and what it prints."""
    if not b.first.startswith("$ rig "):
        return False
    argv = shlex.split(b.first[2:])
    shown = b.text.splitlines()[1:]
    parses(argv)
    if argv[1] == "read" and "--port" in argv:
        # a real meter: the output shown is the embedded default's (as the README says)
        i = argv.index("--port")
        r = rig(work, *argv[1:i], *argv[i + 2:])
        assert r.returncode == 0, r.stderr
        same_lines(shown, r.stdout)
    elif argv[1:] == ["run", "my-meter.toml"]:
        # a real meter: the same plan on the embedded default, the cases the README shows
        plan = (work / "my-meter.toml").read_text()
        assert 'kind = "port"' in plan and 'port = "/dev/ttyUSB0"' in plan
        (work / "my-meter.toml").write_text(plan.replace('kind = "port"', 'kind = "embedded"')
                                            .replace('port = "/dev/ttyUSB0"\n', ""))
        store = work / "first-run.sqlite"
        cases = [x.split()[1] for x in shown if x.startswith("pass ")]
        r = run_rig("run", "--no-progress", "my-meter.toml", *[a for c in cases for a in ("--case", c)],
                    cwd=work, env={"RIG_STORE": "rig-results.sqlite"}, timeout=600)
        (work / "rig-results.sqlite").rename(store)
        assert r.returncode == 0, r.stdout + r.stderr
        same_lines(shown, r.stdout)
    elif argv[1] == "decode":
        if not (work / "capture.npy").exists():
            check_python(work, next(x for x in BLOCKS if "capture.npy" in x.text and x.kind == "python"))
        r = rig(work, *argv[1:])
        assert r.returncode == 0, r.stderr
        same_lines(shown, r.stdout, subset=True)     # "some measurement lines left out"
    elif argv[1] == "parse":
        r = rig(work, *argv[1:])
        same_lines(shown, r.stdout, numbers=False, subset=True)
    else:
        r = rig(work, *argv[1:])
        assert r.returncode == 0, r.stderr
        same_lines(shown, r.stdout)
    return True


def check_plan_error(work, b: Block) -> bool:
    """The example of a plan error: a plan with that mistake gives that message."""
    if not re.match(r"plan\.toml:\d+: ", b.first):
        return False
    (work / "plan.toml").write_text(
        'name = "plan"\n\n[[case]]\nuse = "meter/6.6/read"\n\n[[case]]\nuse = "electrical/margin"\n'
        'name = "m"\nparams = { quantity = "baud_error" }\n'
        "sweep = { amount = { start = 0.0, stop = 8.0, step = 0 } }\n")
    r = rig(work, "check", "plan.toml")
    assert r.returncode == 2 and r.stderr.strip() == f"rig: {b.first}", r.stderr
    return True


def check_install(work, b: Block) -> bool:
    """The quick start's install lines: not run (they install the package); the `rig run` they end
    with is run as a dry run, the tests are this suite."""
    if not b.first.startswith("python3 -m venv .venv"):
        return False
    tail = b.first.split("&&")[-1].strip()
    if tail == "pytest":
        return True
    assert tail == "rig run", tail
    r = rig(work, "run", "--dry-run")
    assert r.returncode == 0 and "plan conformance" in r.stdout and "plan electrical" in r.stdout, r.stderr
    return True


CHECKERS = (check_session, check_synopsis, check_commands, check_shell, check_toml, check_python,
            check_plan_error, check_install)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README:{b.line}:{b.first[:30]}" for b in BLOCKS])
def test_readme_example(work, block):
    for check in CHECKERS:
        if check(work, block):
            return
    pytest.fail(f"README.md:{block.line}: an example no test checks:\n{block.text}")


def test_every_example_is_found():
    fences = README.read_text(encoding="utf-8").count("```") // 2
    assert sum(b.kind != "" for b in BLOCKS) == fences
    assert len(BLOCKS) > 25
