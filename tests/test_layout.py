"""The package reads top to bottom: no import cycles (at run time, inside functions, or for
type checking alone), constants defined once or checked."""

import ast
from pathlib import Path

import speeddata
from speeddata import _codec
from speeddata import schema as S

PACKAGE = Path(speeddata.__file__).parent
# the subpackages above the model and the store, bottom first: each imports only those
# before it (and the model's modules and the store at the top of the package)
LAYERS = ["speeddata.live", "speeddata.ingest", "speeddata.cluster", "speeddata.serving",
          "speeddata.cli"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports: at the top, inside functions, or under
    ``if TYPE_CHECKING`` (a cycle that only type checking sees is still one a reader
    follows)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    files.update({_module_name(p): p for p in PACKAGE.rglob("*.pyx")
                  if p.with_suffix(".pyi").exists()})
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        if path.suffix == ".pyx":
            graph[name] = set()
            continue
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    target = ".".join(base[:len(base) - node.level + 1] +
                                      ([node.module] if node.module else []))
                elif node.module and node.module.startswith("speeddata"):
                    target = node.module
                else:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in files else target)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("speeddata"))
    return {k: {e for e in v if e in files and e != k} for k, v in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert "speeddata.store._channel" in graph and graph["speeddata.store._store"]
    assert "speeddata.cluster" in graph["speeddata.serving.service"]   # under TYPE_CHECKING
    assert "speeddata.cluster" in graph["speeddata.serving.server"]    # inside a function
    # a package's __init__ re-exports its modules; the modules never import it back
    for name, edges in graph.items():
        for pkg in ("speeddata", "speeddata.store", *LAYERS):
            if name.startswith(pkg + ".") and name != pkg:
                assert pkg not in edges, f"{name} imports its package {pkg}"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_loading_a_config_loads_no_extension_of_the_ingest_path():
    graph = import_graph()

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(graph.get(n, ()))
        return seen

    assert not {"speeddata._ingest", "speeddata.live", "speeddata.ingest.worker"} & \
        reach("speeddata.config")
    assert "speeddata._ingest" not in reach("speeddata.store")
    # `python -m speeddata.ingest.worker` loads its package first: were the worker among
    # what the package imports, it would run as a second copy of itself
    assert "speeddata.ingest.worker" not in reach("speeddata.ingest")


def test_reject_reasons_and_their_codes_agree():
    assert _codec.REASONS[0] == "ok"
    for reason, code in _codec.REASON_CODES.items():
        assert _codec.REASONS[code] == reason
    assert set(_codec.REASON_CODES) == set(_codec.REASONS)


def test_op_kinds_agree_between_schema_and_codec():
    assert _codec.OP_KINDS == {"NULL": S.NULL, "BOOLEAN": S.BOOLEAN, "INT": S.INT,
                               "LONG": S.LONG, "FLOAT": S.FLOAT, "DOUBLE": S.DOUBLE,
                               "BYTES": S.BYTES, "STRING": S.STRING, "ENUM": S.ENUM,
                               "FIXED": S.FIXED, "UNION": S.UNION}


def test_mypy_passes_on_the_package():
    import subprocess
    import sys
    root = PACKAGE.parent
    out = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                          str(root / "pyproject.toml"), str(PACKAGE)], capture_output=True,
                         text=True, cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr


def test_nothing_outside_the_store_imports_its_private_modules():
    """The store's seam: what its callers need (Avro container streams of a range, imports
    of a container file, descriptions of its files) is offered by ``speeddata.store``;
    nothing outside opens a segment or reads its private modules."""
    graph = import_graph()
    leaks = sorted(f"{name} -> {edge}" for name, edges in graph.items()
                   if not name.startswith("speeddata.store") for edge in edges
                   if edge.startswith("speeddata.store._"))
    assert graph["speeddata.serving.service"] and \
        "speeddata.store" in graph["speeddata.serving.service"]
    assert not leaks, leaks


def _layer(module: str) -> str | None:
    return next((p for p in LAYERS if module == p or module.startswith(p + ".")), None)


def test_each_layer_imports_only_those_below_it_through_their_packages():
    """``speeddata.serving`` may use ``speeddata.cluster``, never the other way round; and
    another layer reaches a layer's modules only through what its ``__init__`` offers, as
    the store's callers do."""
    graph = import_graph()
    assert set(LAYERS) <= set(graph), "a layer's package is missing"
    wrong = []
    for name, edges in graph.items():
        mine = _layer(name)
        for edge in edges:
            theirs = _layer(edge)
            if theirs is None or theirs == mine:
                continue
            if mine is None:
                wrong.append(f"{name} (the model) -> {edge}")
            elif LAYERS.index(theirs) > LAYERS.index(mine):
                wrong.append(f"{name} -> {edge} (a layer above)")
            elif edge != theirs:
                wrong.append(f"{name} -> {edge} (not through {theirs})")
    assert "speeddata.live" in graph["speeddata.ingest.worker"]
    assert not wrong, wrong


def test_no_module_is_over_600_lines():
    """A module a reader takes in at once: past 600 lines it is cut where the thread
    breaks (the generated gRPC code aside)."""
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if "v1" not in p.parts and (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
