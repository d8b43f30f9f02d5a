"""The code's layout keeps its promises: no import cycles, the runtime never imports the kit, the kit's top level stays small."""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("emoji_mirror", "training")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports (module level or inside functions), relative imports resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def project_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in files and m != name} for name, path in files.items()}


def test_no_import_cycles():
    graph = project_graph()
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle.extend(stack[stack.index(dep):] + [node, dep] if dep in stack else [node, dep])
                return True
            if dep not in state and visit(dep, stack + [node]):
                return True
        state[node] = 2
        return False

    assert not any(visit(n, []) for n in sorted(graph) if n not in state), f"import cycle: {' -> '.join(cycle)}"


def test_the_runtime_never_imports_the_training_kit():
    graph = project_graph()
    leaks = {name: sorted(m for m in deps if m.startswith("training")) for name, deps in graph.items() if name.startswith("emoji_mirror")}
    assert not {k: v for k, v in leaks.items() if v}


def test_the_kit_has_at_most_eight_top_level_modules_and_subpackages_for_data_evaluation_and_the_sprint():
    training = REPO_ROOT / "training"
    modules = sorted(p.name for p in training.glob("*.py"))
    assert len(modules) <= 8, modules
    assert {"data", "evaluate", "sprint"} <= {p.name for p in training.iterdir() if (p / "__init__.py").is_file()}
    assert not (REPO_ROOT / "emoji_mirror" / "schema_lite.py").exists()


def test_no_module_imports_the_trainer_except_for_its_command_line():
    """evaluate/sprint/distill take device and seeding from training.runtime; the trainer's module is imported only for
    `command_line` (its argv, built beside its parser) and by the tests."""
    for name, path in ((module_name(p), p) for p in (REPO_ROOT / "training").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("train") and node.module != "training.runtime":
                names = {alias.name for alias in node.names}
                assert names == {"command_line"}, f"{name} imports {names} from the trainer"
