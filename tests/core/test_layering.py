"""The layers hold: ``core`` imports nothing of headwater outside itself, and
``import headwater`` stays light."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import headwater

CORE = Path(headwater.__file__).parent / "core"
HEAVY = ("dask", "distributed", "pydantic", "pydantic_settings", "cloudpickle", "boto3")


def module_level_imports(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import outside function and class bodies.

    Imports under ``if``/``try`` at module level count (``if TYPE_CHECKING:`` too).
    """
    found: list[tuple[int, str]] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if node.module:
                found.append((node.lineno, module))
            else:  # from .. import config
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_there_are_core_modules():
    names = {p.stem for p in core_modules()}
    assert {"flow", "task", "state", "edge", "triggers"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_imports_nothing_of_headwater_outside_core(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("headwater", *path.relative_to(CORE.parent).parent.parts))
    outside = [
        f"{path.name}:{line} imports {name}"
        for line, name in module_level_imports(tree, package)
        if (name == "headwater" or name.startswith("headwater."))
        and not (name == "headwater.core" or name.startswith("headwater.core."))
    ]
    assert outside == []


def test_the_import_scanner_sees_what_it_should():
    tree = ast.parse(
        "import os\n"
        "from headwater.engine import run_flow\n"
        "if True:\n    import headwater.storage\n"
        "try:\n    from .. import config\nexcept ImportError:\n    import headwater.client\n"
        "def f():\n    import headwater.server\n"
    )
    names = [name for _, name in module_level_imports(tree, "headwater.core")]
    assert sorted(names) == ["headwater.client", "headwater.config", "headwater.engine",
                             "headwater.storage", "os"]


def _imported_after(code: str) -> str:
    heavy = "{" + ", ".join(map(repr, HEAVY)) + "}"
    script = f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_headwater_stays_light():
    assert _imported_after("import headwater") == "[]"


def test_building_a_flow_and_naming_executors_stays_light():
    code = (
        "from headwater import Flow, Parameter, task\n"
        "import headwater.executors\n"
        "@task\n"
        "def f(x):\n"
        "    return x\n"
        "with Flow('f') as flow:\n"
        "    f(Parameter('p'))\n"
        "flow.validate()\n"
        "headwater.executors.LocalExecutor(), headwater.executors.LocalDaskExecutor()\n"
        "headwater.executors.DaskExecutor()\n"
    )
    assert _imported_after(code) == "[]"


def test_the_light_import_check_sees_heavy_modules():
    assert "'dask'" in _imported_after("import headwater, dask")


# -- the whole package: import-linter's contracts in pyproject.toml (also run by `make lint`) ---------

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip(f"import-linter is not installed next to {sys.executable} (pip install -e '.[test]')")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_headwater_keeps_its_layers_and_has_no_import_circle() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_the_layer_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    """A package shaped like headwater whose low layer climbs only inside a function is refused."""
    package = tmp_path / "hwlayers"
    for name in ("core", "engine"):
        (package / name).mkdir(parents=True)
        (package / name / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "engine" / "run.py").write_text("from hwlayers.core import model\n")
    (package / "core" / "model.py").write_text("def run():\n    from hwlayers.engine import run\n    return run\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_package = "hwlayers"\n\n[[tool.importlinter.contracts]]\n'
        'name = "layers"\ntype = "layers"\nlayers = ["hwlayers.engine", "hwlayers.core"]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    done = _lint_imports(tmp_path, env)

    assert done.returncode != 0
    assert "hwlayers.core.model -> hwlayers.engine.run (l.2)" in done.stdout, done.stdout
