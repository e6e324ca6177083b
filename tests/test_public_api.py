"""The library, its callbacks and data modules reach torch, Lightning and other libraries through their public APIs only: a private
name (``trainer._accelerator_connector``, ``torch._foreach_lerp_``) can vanish in any release, as lightning-bolts
found when Lightning 2.0 removed what it used."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for folder in ("gans", "callbacks", "datamodules") for p in (ROOT / folder).rglob("*.py"))
#: The private names that have no public replacement, each read in one wrapper whose comment says why, with the test
#: that fails when the library changes them.
ALLOWED = {
    # Lightning keeps a single-device run's cluster environment only here (test_preemption.py::
    # test_a_single_device_run_keeps_the_users_slurm_plugin).
    "callbacks/preemption.py": {"trainer._accelerator_connector"},
    # argparse keeps the help of subcommands and the titles of groups only here (test_cli_errors.py::
    # test_help_says_what_the_tool_is_and_how_to_start).
    "gans/cli.py": {"parser._action_groups", "group._group_actions", "self.parser._actions"},
}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")  # dunders (__future__, __init__) are public


def private_uses(tree: ast.AST) -> list[str]:
    """``owner._name`` attribute accesses whose owner is not the object itself (``self``/``cls``), and imports of
    private modules or names, by line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(alias.name for alias in node.names)]
            if any(private(part) for name in names for part in name.split(".")):
                found.append((node.lineno, f"from {node.module} import ..."))
    return [f"line {line}: {text}" for line, text in sorted(found)]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_no_private_api_of_other_code(path):
    allowed = ALLOWED.get(str(path.relative_to(ROOT)), set())
    uses = [use for use in private_uses(ast.parse(path.read_text())) if use.split(": ", 1)[1] not in allowed]
    assert uses == []


def test_the_check_finds_private_uses():
    source = "import torch\nfrom torch._dynamo import config\ntorch._foreach_lerp_(a, b, 0.5)\nself._own = 1\n"
    assert private_uses(ast.parse(source)) == ["line 2: from torch._dynamo import ...", "line 3: torch._foreach_lerp_"]
