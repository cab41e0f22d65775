"""The layout of DESIGN.md, checked: no import cycle (imports inside functions count), lower layers never
reach up into pipelines/ or training/, no config class reads files, no oversized module."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "vdmkit"
LOWER_LAYERS = ("io", "diffusion", "sampling", "backbones", "autoencoders", "data", "conditioning")
MAX_LINES = 700


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(imported vdmkit module, qualified name of the enclosing function, or None at module or class level) for
    every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    found = []

    def target(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node, qualname, in_function):
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in child.names]
            for name in names:
                t = target(name) if name.startswith("vdmkit") else None
                if t is not None and t != me:
                    found.append((t, qualname if in_function else None))
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{qualname}.{child.name}" if qualname else child.name
                visit(child, inner, in_function or not isinstance(child, ast.ClassDef))
            else:
                visit(child, qualname, in_function)

    visit(tree, None, False)
    return found


def import_graph() -> dict[str, set[str]]:
    """Edges a -> b when executing a may execute b: the module itself and every package __init__ on the way
    (except a's own ancestors, which Python has already started before a runs)."""
    graph = {m: set() for m in MODULES}
    for me, path in MODULES.items():
        mine = {me.rsplit(".", k)[0] for k in range(1, me.count(".") + 1)}
        for t, _ in imports(path):
            parts = t.split(".")
            for k in range(1, len(parts) + 1):
                step = ".".join(parts[:k])
                if step != me and step not in mine and step in MODULES:
                    graph[me].add(step)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
            strong(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_counting_imports_inside_functions():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_never_import_pipelines_or_training(layer):
    offenders = [(m, t) for m, p in MODULES.items() if m.startswith(f"vdmkit.{layer}")
                 for t, _ in imports(p) if t.startswith(("vdmkit.pipelines", "vdmkit.training"))]
    assert offenders == []


def test_evaluation_imports_pipelines_only_inside_the_function_that_samples_a_model():
    places = {(m, scope) for m, p in MODULES.items() if m.startswith("vdmkit.evaluation")
              for t, scope in imports(p) if t.startswith(("vdmkit.pipelines", "vdmkit.training"))}
    assert all(scope is not None for _, scope in places), places
    assert len(places) <= 1, places


def test_config_module_is_generic():
    """config.py holds from_dict / to_dict / YAML / overrides only: it imports no other part of vdmkit but errors."""
    assert {t for t, _ in imports(MODULES["vdmkit.config"])} <= {"vdmkit.errors"}


def test_no_module_is_oversized():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_nothing_below_the_app_imports_it():
    """app/ sits on top (it imports pipelines/); only the command line reaches it, by name (SUBCOMMAND_MODULES)."""
    offenders = [(m, t) for m, p in MODULES.items() if not m.startswith("vdmkit.app")
                 for t, _ in imports(p) if t.startswith("vdmkit.app")]
    assert offenders == []
    from vdmkit.cli import SUBCOMMAND_MODULES

    assert "vdmkit.app.cli" in SUBCOMMAND_MODULES


def test_the_app_imports_its_web_stack_only_inside_functions():
    """`import vdmkit.app.server` (and so `vdmkit --help`) must work without fastapi, uvicorn or pydantic."""
    web = ("fastapi", "uvicorn", "starlette", "pydantic", "selenium", "httpx")
    for module, path in MODULES.items():
        if not module.startswith("vdmkit.app"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in web], module
