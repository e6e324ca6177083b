"""The README points only at files the repository has, and says how to install without the CUDA build."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_document_and_link_the_readme_names_is_in_the_repository():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)  # [text](relative/path#anchor), not URLs
    documents = re.findall(r"`([\w./-]+\.md)`", README)  # documents named in code spans
    named = set(links) | set(documents)
    assert "DESIGN.md" in named
    assert [name for name in sorted(named) if not (ROOT / name).exists()] == []


def test_every_config_is_in_the_readme():
    assert [c.name for c in sorted((ROOT / "configs").glob("*.yaml")) if c.name not in README] == []


def test_the_readme_says_how_to_install_the_cpu_only_torch():
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in README
