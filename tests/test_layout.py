"""harness/ is layered by role (docs/development.md): a module imports from its own folder and
from the folders below it, never from one above, so each folder reads without the ones above."""

import ast
from pathlib import Path

import pytest

from harness import ROOT

pytestmark = pytest.mark.fast  # starts no server: make test-fast

# bottom to top; the modules directly in harness/ (cli, interactive) may import any of them
LAYERS = ["spec", "stack", "measure", "results", "pages", "runs", "studies"]
HARNESS = ROOT / "harness"


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, harness module) of every harness import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness."):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("harness.")]
    return found


def test_every_harness_folder_is_a_declared_layer():
    folders = {p.parent.name for p in HARNESS.glob("*/__init__.py")}
    assert folders == set(LAYERS)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for layer in LAYERS:
        for path in (HARNESS / layer).glob("*.py"):
            for line, module in imports(path):
                target = module.split(".")[1]
                if target in LAYERS and LAYERS.index(target) > LAYERS.index(layer):
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert upward == []


def test_the_check_finds_an_upward_import(tmp_path):
    """What the test above reads: an import from a layer above, inside a function too."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from harness.runs import bench\n")
    assert imports(module) == [(2, "harness.runs")]


# The house's code, and the declarations allowed to run long: the command line's parser and
# Locust's options, one entry after another
HOUSE = ["harness", "benchapp", "locustfiles", "django-stream-release/src"]
DECLARATIONS = {("harness/cli.py", "_parser"), ("locustfiles/_common.py", "add_options")}
MAX_LINES = 60


def long_functions(path: Path) -> list[tuple[str, int]]:
    """(name, lines) of every function in the file longer than MAX_LINES, nested ones too."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]


def test_no_function_runs_over_sixty_lines_but_the_declarations():
    too_long = [
        f"{path.relative_to(ROOT)}: {name} ({lines} lines)"
        for folder in HOUSE
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name, lines in long_functions(path)
        if (str(path.relative_to(ROOT)), name) not in DECLARATIONS
    ]
    assert too_long == []


def test_the_length_check_counts_a_function_from_def_to_its_last_line(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def short():\n    pass\n\n\ndef long():\n" + "    x = 1\n" * MAX_LINES)
    assert long_functions(module) == [("long", MAX_LINES + 1)]
