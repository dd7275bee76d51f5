"""The package installs with pip, ships its committed models, and its commands answer --help without torch."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT
from sentiment_dpo.commands import COMMANDS


def test_the_project_pins_what_requirements_txt_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert project["dependencies"] == pins
    assert project["scripts"]["sentiment-dpo"] == "sentiment_dpo.commands:console"


def test_pip_install_ships_the_package_and_its_committed_models(tmp_path):
    """A non-editable install into a folder of its own: the package and the embedded models' files are there."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--target", str(tmp_path / "site"), str(ROOT)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    installed = tmp_path / "site" / "sentiment_dpo"
    for folder in ("policy", "reward", "judge", "ceiling"):
        committed = sorted(p.name for p in (ROOT / "sentiment_dpo" / "embedded" / folder).iterdir())
        assert sorted(p.name for p in (installed / "embedded" / folder).iterdir()) == committed
    # imported from there, outside the checkout, it finds its policy in its own folder
    probe = subprocess.run([sys.executable, "-c",
                            "import sentiment_dpo.embedded.default_models as e; print(e.policy_path())"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60,
                           env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(installed / "embedded" / "policy")


NO_TORCH = """
import sys
from sentiment_dpo.commands import console
try:
    console([{args}])
except SystemExit:
    pass
assert "torch" not in sys.modules, "--help imported torch"
"""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_answers_help_without_importing_torch(command):
    result = subprocess.run([sys.executable, "-c", NO_TORCH.format(args=f"{command!r}, '--help'")],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert re.search(rf"usage: sentiment-dpo {command}", result.stdout)


def test_the_console_lists_its_commands_and_refuses_others(capsys):
    from sentiment_dpo.commands import console

    assert console(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in COMMANDS)
    assert console(["trian"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'trian' is not a command" in err and "train" in err


def module_name(file: Path) -> str:
    """`sentiment_dpo/stages/train.py` -> `stages.train`; a package's `__init__.py` is the package."""
    parts = file.relative_to(ROOT / "sentiment_dpo").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at the top or inside a function (read from the source); a
    subpackage's `__init__` counts as a module of its own, so `from ..evaluation import plots` imports `evaluation`
    and `evaluation.plots`."""
    import ast

    files = sorted((ROOT / "sentiment_dpo").rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph = {}
    for file in files:
        name = module_name(file)
        package = name.split(".") if file.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
        imported = set()
        tree = ast.parse(file.read_text())
        for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
            block.body = []  # imports for type hints only: not run
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
            elif (node.module or "").startswith("sentiment_dpo."):
                target = node.module.split(".")[1:]
            else:
                continue
            for depth in range(1, len(target) + 1):  # importing a.b imports a first
                imported.add(".".join(target[:depth]))
            imported |= {".".join(target + [alias.name]) for alias in node.names}
        graph[name] = imported & modules - {name}
    return graph


def test_the_import_graph_sees_every_module_and_relative_import():
    """The graph the cycle check walks is the real one: every module is in it, and known edges are found."""
    graph = package_imports()
    assert {"stages.train", "methods.registry", "evaluation.ceiling", "embedded", "embedded.corpus"} <= set(graph)
    assert {"evaluation", "evaluation.ceiling_samples", "files"} <= graph["stages.evaluate"]
    assert {"embedded", "embedded.corpus"} <= graph["embedded.default_models"]


def test_the_package_has_no_import_cycle():
    """Not even one hidden by an import inside a function: every module can be read after the ones it uses."""
    graph, done, path = package_imports(), set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


# What a layer of the package must not import, at the top or inside a function: the stage configs import the method
# registry (the one home of method facts), so methods/ never import the configs; no library module imports the
# stages, the experiments or the command line.
FORBIDDEN = {
    "methods": {"config", "config_parser", "presets", "stages", "experiments", "commands", "cli"},
    "evaluation": {"stages", "experiments", "commands", "cli"},
    "embedded": {"stages", "experiments", "commands", "cli", "methods", "evaluation"},
    "stages": {"experiments", "commands", "cli"},
    "config": {"config_parser", "stages", "experiments", "commands", "cli"},
}


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} imports {imported}" for module, imports in sorted(graph.items())
            for imported in sorted(imports) if imported.split(".")[0] in FORBIDDEN.get(module.split(".")[0], ())]


def test_imports_go_one_way():
    assert layering_violations(package_imports()) == []


def test_the_layering_check_finds_an_import_the_wrong_way():
    graph = package_imports()
    graph["methods.online_rl"] = graph["methods.online_rl"] | {"config"}
    assert layering_violations(graph) == ["methods.online_rl imports config"]


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    """The check above, on a graph with a cycle hidden two modules deep, fails (it is not a test that cannot)."""
    monkeypatch.setitem(globals(), "package_imports", lambda: {"a": {"b"}, "b": {"c"}, "c": {"a"}})
    with pytest.raises(AssertionError, match="a -> b -> c -> a"):
        test_the_package_has_no_import_cycle()


def imported_by(file: Path) -> set[str]:
    """The package modules a file outside the package imports (and the packages above them)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sentiment_dpo":
            parts = node.module.split(".")[1:]
            found |= {".".join(parts[:depth]) for depth in range(1, len(parts) + 1)}
            found |= {".".join(parts + [alias.name]) for alias in node.names}
    return found


def test_every_module_is_reachable_from_an_entry_point():
    """No orphan: every module is imported, directly or not, by the console command (which the top-level scripts
    call) or by a maintenance script in scripts/."""
    graph = package_imports()
    entry = {"commands"} | {m for f in (ROOT / "scripts").glob("*.py") for m in imported_by(f)} & set(graph)
    reached, todo = set(), list(entry)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    assert set(graph) - reached - {"__init__"} == set()
    assert all("commands" in imported_by(ROOT / script) for script in (
        "text_generation.py", "prepare_dataset.py", "main.py", "calculate_metrics.py", "run_pipeline.py", "sweep.py"))


def test_the_package_imports_nothing_from_the_studies():
    """Study code lives with its study; the product neither imports it nor runs it."""
    import ast

    study_modules = {f.stem for f in (ROOT / "studies").rglob("*.py")}
    for file in (ROOT / "sentiment_dpo").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                assert top != "studies" and top not in study_modules, f"{file.name} imports {name}"


def test_no_module_of_the_package_shadows_the_standard_library():
    names = {path.stem for path in (ROOT / "sentiment_dpo").rglob("*.py")}
    assert not names & sys.stdlib_module_names
