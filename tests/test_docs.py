"""The README stands alone: it points only at files of this repository, and docs/contracts.md keeps the design's."""

from __future__ import annotations

import re

import pytest

from service import ROOT

README = ROOT / "README.md"
CONTRACTS = ROOT / "docs" / "contracts.md"
DESIGN = ROOT.parent / "shared" / "DESIGN.md"  # the design the contracts come from, when it is next to the checkout

# Markdown links and images, and paths in backticks, that point into the repository's docs/ folder.
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_DOCS_PATH = re.compile(r"`(docs/[^`\s]+)`")


def _local_targets(text: str) -> list[str]:
    """Each link target in the text that is a file of the repository (no URL, no anchor of the page itself)."""
    links = [target.split("#")[0] for target in _LINK.findall(text)]
    local = [t for t in links if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
    return local + _DOCS_PATH.findall(text)


def test_the_readme_never_points_outside_the_repository():
    text = README.read_text()
    assert "../shared" not in text and "shared/DESIGN.md" not in text


def test_every_file_the_readme_links_to_exists():
    targets = _local_targets(README.read_text())
    assert "docs/contracts.md" in targets  # the contracts are linked, not only mentioned
    missing = [t for t in targets if not (ROOT / t).is_file()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_the_contracts_say_they_mirror_the_design():
    text = CONTRACTS.read_text()
    assert "mirrors the Contracts section" in text and "kept in step" in text


def _contracts_section(text: str) -> str:
    return text.split("\n## Contracts\n", 1)[1].split("\n## ", 1)[0] if "\n## Contracts\n" in text else ""


def _names(text: str) -> set[str]:
    """Setting and command names in the first column of the section's tables."""
    names = set()
    for row in re.findall(r"^\| (.+?) \|", text, re.M):
        names.update(re.findall(r"`([^`]+)`", row))
    return names


@pytest.mark.skipif(not DESIGN.exists(), reason="the design document is not next to this checkout")
def test_every_setting_and_command_of_the_design_is_in_the_contracts():
    design = _names(_contracts_section(DESIGN.read_text("utf-8")))
    assert {"MAIL_FROM", "set-password EMAIL", "classify FILE…"} <= design  # the tables were found
    contracts = _names(CONTRACTS.read_text())
    assert not design - contracts, f"in DESIGN.md but not in docs/contracts.md: {sorted(design - contracts)}"
