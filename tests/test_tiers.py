"""The package's tiers: a module imports only from its own tier or lower ones.

core < proto < data < engine < applications (the top-level modules). The
workflow's scripts and bench/ use the applications' library (`api`), never
the command line (`cli`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline_lib"
TIERS = {"core": 0, "proto": 1, "data": 2, "engine": 3}
APPLICATIONS = 4


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tier(module: str) -> int:
    parts = module.split(".")
    return TIERS.get(parts[1], APPLICATIONS) if len(parts) > 1 else APPLICATIONS


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every pipeline_lib import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from pipeline_lib.engine import net` imports the module pipeline_lib.engine.net
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")
                          ).with_suffix(".py").is_file()]
    return [(line, m) for line, m in found if m.split(".")[0] == "pipeline_lib"]


def upward_imports(files) -> list[str]:
    bad = []
    for path in files:
        here = module_name(path)
        for line, module in imported_modules(path):
            if tier(module) > tier(here):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {here} (tier {tier(here)}) "
                           f"imports {module} (tier {tier(module)})")
    return bad


def test_no_module_imports_a_higher_tier():
    assert upward_imports(sorted(PACKAGE.rglob("*.py"))) == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    fake = PACKAGE / "core" / "_tier_probe.py"
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: "from pipeline_lib.engine.net import Net\n"
                        if self == fake else Path.read_bytes(self).decode())
    assert upward_imports([fake]) == [
        "pipeline_lib/core/_tier_probe.py:1: pipeline_lib.core._tier_probe (tier 0) imports "
        "pipeline_lib.engine.net (tier 3)"]


@pytest.mark.parametrize("folder", ["workflow", "bench"])
def test_workflow_and_bench_use_the_library_not_the_command_line(folder):
    users = [f"{path.relative_to(ROOT)}:{line}" for path in sorted((ROOT / folder).rglob("*.py"))
             for line, module in imported_modules(path) if module.startswith("pipeline_lib.cli")]
    assert users == []
