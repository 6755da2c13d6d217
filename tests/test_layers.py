"""The house's import graph: no circle, and each layer imports only the layers above it
(docs/architecture.md's table).

The graph is read from the source with `ast`, every import counted wherever it is written (at the
top of a module or inside a function: a function-level import that closes a circle is still a
circle, only postponed). Importing `a.b.c` runs `a/__init__` and `a/b/__init__` too, so those count
as well, except the importer's own packages (already running when it is imported).
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "rig"

# docs/architecture.md's layers, top to bottom: a module may import its own layer and those above.
# (module prefix, layer); the longest prefix wins.
LAYERS = [
    ("rig.errors", "base"), ("rig.config_check", "base"), ("rig.measurement", "base"), ("rig._framing", "hot loops"),
    ("rig._clock", "hot loops"), ("rig.deadline", "hot loops"), ("rig._uart", "hot loops"), ("rig._framing_model", "hot loops"),
    ("rig.profile", "profile"), ("rig.protocol", "protocol"), ("rig.tokens", "tokens"),
    ("rig.link", "link"), ("rig.exchange", "roles"), ("rig.client", "roles"), ("rig.server", "roles"),
    ("rig.embedded", "roles"), ("rig.physical", "physical"), ("rig.bench", "bench"),
    ("rig.campaign", "campaign"),
    ("rig.cli", "faces"), ("rig.__main__", "faces"), ("rig.decode_cli", "faces"), ("rig.bench_cli", "faces"),
    ("rig.campaign.cli", "faces"), ("rig.junit", "faces"), ("rig.pytest_plugin", "faces"),
    ("rig.samples", "faces"),      # the script that writes the shipped sample sessions
]
ORDER = ["base", "hot loops", "profile", "protocol", "tokens", "link", "roles", "physical", "bench",
         "campaign", "faces"]
# the report layer: the run summary, the HTML report and its plots, and the exchanges as text
REPORT = ("rig.campaign.report", "rig.campaign.html_report", "rig.campaign.plots")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(RIG.rglob("*.py"))}


def _resolve(name: str, known: set[str]) -> str | None:
    """The rig module `name` is, or is in (`rig.campaign.plan.PlanError` -> rig.campaign.plan)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the rig modules it imports (top level and inside functions alike)."""
    mods = modules()
    known = set(mods) | {"rig._framing", "rig._clock", "rig._uart"}   # the Cython extensions
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    pkg = f"{base}.{node.module}" if node.module else base
                else:
                    pkg = node.module or ""
                targets.append(pkg)
                targets += [f"{pkg}.{a.name}" for a in node.names]   # `from pkg import submodule`
        for t in targets:
            if not t.startswith("rig"):
                continue
            r = _resolve(t, known)
            if r is None:
                continue
            # the module named (its own package too: `from rig.campaign.cases import case` in a
            # case module runs while that package is half done), and the packages on the way,
            # which run first, except the importer's own (already running)
            if r != mod:
                graph[mod].add(r)
            p = r.rpartition(".")[0]
            while p:
                if p != mod and not (mod + ".").startswith(p + ".") and p in known:
                    graph[mod].add(p)
                p = p.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer(mod: str) -> str | None:
    if mod == "rig":
        return "base"          # rig/__init__: the version, nothing else
    best = None
    for prefix, name in LAYERS:
        if (mod == prefix or mod.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, name)
    return best[1] if best else None


def test_the_graph_sees_function_level_imports():
    # the campaign CLI imports the runner inside the command that runs (so `rig --help` does not
    # load it): the graph must see imports written inside functions, or a postponed circle would
    # pass unseen
    src = (RIG / "campaign" / "cli.py").read_text(encoding="utf-8")
    assert "\n    from rig.campaign.runner import Runner\n" in src
    assert "rig.campaign.runner" in import_graph()["rig.campaign.cli"]


def test_no_import_circle_in_the_campaign():
    found = [c for c in cycles(import_graph()) if any(m.startswith("rig.campaign") for m in c)]
    assert not found, f"import circles in rig/campaign: {found}"


# circles outside the campaign and report layers, left to their layer's owners: a new one fails,
# and one gone must be struck off here (so this list stays the truth). None is left.
KNOWN_CIRCLES: list[list[str]] = []


def test_no_import_circle_in_rig_but_the_known_ones():
    found = cycles(import_graph())
    new = [c for c in found if c not in KNOWN_CIRCLES]
    gone = [c for c in KNOWN_CIRCLES if c not in found]
    assert not new, f"new import circles in rig/: {new}"
    assert not gone, f"import circles no longer there (strike them off KNOWN_CIRCLES): {gone}"


def test_the_campaign_and_report_layers_import_only_upward():
    graph = import_graph()
    wrong = []
    for mod, deps in sorted(graph.items()):
        if layer(mod) != "campaign":
            continue
        for d in sorted(deps):
            ld = layer(d)
            assert ld is not None, f"{d} (imported by {mod}) is in no layer of docs/architecture.md"
            if ORDER.index(ld) > ORDER.index("campaign"):
                wrong.append(f"{mod} -> {d} ({ld})")
    assert not wrong, "the campaign layer imports a face: " + "; ".join(wrong)


def test_the_report_layer_imports_no_face_and_no_runner():
    # the report reads a run from the store: it neither runs cases nor writes any face's format
    graph = import_graph()
    for mod in REPORT:
        for d in graph[mod]:
            assert layer(d) != "faces", f"{mod} imports the face {d}"
            assert d not in ("rig.campaign.runner", "rig.campaign.bench"), f"{mod} imports {d}"


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer(m) is None] == []


def test_every_rig_error_derives_from_rig_error():
    # each CLI catches RigError once: an error class of rig's own that is not one would escape as a
    # traceback (StepSkipped is the runner's signal, not an error)
    import importlib

    from rig.errors import RigError
    found = []
    for mod, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names = [n.name for n in tree.body if isinstance(n, ast.ClassDef)
                 and (n.name.endswith("Error") or n.name.endswith("Unsupported"))]
        if names:
            m = importlib.import_module(mod)
            found += [(mod, n) for n in names if not issubclass(getattr(m, n), RigError)]
    assert found == []


def test_old_import_paths_of_moved_names_still_work():
    from rig.campaign import plan, spec
    from rig.campaign.cases import LIBRARY, STAND_IN
    from rig.campaign.errors import PlanError
    from rig.campaign.registry import LIBRARY as registered
    assert plan.PlanError is PlanError and plan.BenchSpec is spec.BenchSpec and plan.key_line is spec.key_line
    assert LIBRARY is registered and "meter/6.4/messages" in LIBRARY and STAND_IN == "stand_in"


def test_a_rig_error_from_any_command_ends_it_with_exit_2_and_its_message(monkeypatch, capsys, tmp_path):
    # one catch at the top of `rig`: an error class no command lists (an instrument's, here raised
    # where `rig runs` would read the store) is still the message and exit code 2, no traceback
    from rig import cli
    from rig.bench.drivers import InstrumentError
    from rig.campaign import cli as campaign_cli

    def runs(args):
        raise InstrumentError("scope TCPIP::192.0.2.1::INSTR: no answer to *IDN? within 2 s")
    monkeypatch.setattr(campaign_cli, "cmd_runs", runs)
    log = logging.getLogger("rig")
    monkeypatch.setattr(log, "handlers", list(log.handlers))    # main() adds its console handler
    assert cli.main(["runs", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert capsys.readouterr().err == "rig: error: scope TCPIP::192.0.2.1::INSTR: no answer to *IDN? within 2 s\n"
