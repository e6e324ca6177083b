"""Callbacks and data modules reach torch, Lightning and other libraries through their public APIs only: a private
name (``trainer._accelerator_connector``, ``torch._foreach_lerp_``) can vanish in any release, as lightning-bolts
found when Lightning 2.0 removed what it used."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for folder in ("callbacks", "datamodules") for p in (ROOT / folder).glob("*.py"))


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


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_no_private_api_of_other_code(path):
    assert private_uses(ast.parse(path.read_text())) == []


def test_the_check_finds_private_uses():
    source = "import torch\nfrom torch._dynamo import config\ntorch._foreach_lerp_(a, b, 0.5)\nself._own = 1\n"
    assert private_uses(ast.parse(source)) == ["line 2: from torch._dynamo import ...", "line 3: torch._foreach_lerp_"]
