"""The default campaign's assets: the roadmap PDF generator and execution-roadmap.yaml."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2.sandbox import SandboxedEnvironment

ASSETS = Path(__file__).resolve().parent.parent / "service" / "assets"
PDF_PATH = ASSETS / "roadmap.pdf"
YAML_PATH = ASSETS / "execution-roadmap.yaml"
DURATION = re.compile(r"^\d+[smhd]$")
PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?!s)")


def _load_generator():
    spec = importlib.util.spec_from_file_location("roadmap_generator", ASSETS / "roadmap.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built() -> bytes:
    return _load_generator().build_pdf()


@pytest.fixture(scope="module")
def campaign() -> dict:
    document = yaml.safe_load(YAML_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and isinstance(document.get("campaigns"), list)
    assert len(document["campaigns"]) == 1
    return document["campaigns"][0]


# -- the PDF ----------------------------------------------------------------------------------


def test_build_pdf_returns_a_pdf_with_enough_pages(built):
    assert isinstance(built, bytes)
    assert built.startswith(b"%PDF")
    assert built.rstrip().endswith(b"%%EOF")
    assert len(PAGE_OBJECT.findall(built)) >= 5


def test_build_is_deterministic(built):
    assert _load_generator().build_pdf() == built


def test_committed_pdf_matches_a_fresh_build(built):
    assert PDF_PATH.is_file(), "run: python service/assets/roadmap.py"
    assert PDF_PATH.read_bytes() == built, "roadmap.pdf is stale; rerun service/assets/roadmap.py"


def test_script_writes_to_the_given_path(tmp_path, built):
    out = tmp_path / "copy.pdf"
    assert _load_generator().main([str(out)]) == 0
    assert out.read_bytes() == built


def test_pdf_metadata_names_the_product(built):
    assert b"Execution Success Roadmap" in built
    assert b"Acumen Management Group" in built


# -- the campaign YAML ------------------------------------------------------------------------


def test_campaign_has_the_required_keys(campaign):
    assert campaign["slug"] == "execution-roadmap"
    assert campaign["name"] == "Execution Success Roadmap"
    assert campaign["active"] is True
    assert campaign["triggers"]["addresses"] == ["roadmap@acumen.example"]
    assert campaign["triggers"]["keywords"] == ["roadmap", "execution success"]
    magnet = campaign["magnet"]
    for key in ("subject", "text", "html"):
        assert isinstance(magnet[key], str) and magnet[key].strip()
    assert magnet["attachments"] == ["roadmap.pdf"]
    assert (ASSETS / magnet["attachments"][0]).is_file()
    assert campaign["sending"] == {"window": "mon-fri 08:00-18:00", "timezone": "America/Chicago"}


def test_campaign_has_three_steps_with_valid_delays(campaign):
    steps = campaign["steps"]
    assert len(steps) == 3
    for step in steps:
        assert DURATION.match(str(step["after"])), step["after"]
        assert isinstance(step["subject"], str) and step["subject"].strip()
        assert isinstance(step["text"], str) and step["text"].strip()


def test_texts_carry_no_unsubscribe_link(campaign):
    sources = [campaign["magnet"]["text"], campaign["magnet"]["html"]]
    sources += [step["text"] for step in campaign["steps"]]
    for source in sources:
        assert "unsubscribe" not in source.lower()
        assert "http" not in source.lower()


def _templates(campaign: dict) -> list[tuple[str, str]]:
    magnet = campaign["magnet"]
    found = [(f"magnet {key}", magnet[key]) for key in ("subject", "text", "html")]
    for n, step in enumerate(campaign["steps"], 1):
        keys = [key for key in ("subject", "text", "html") if key in step]
        found += [(f"step {n} {key}", step[key]) for key in keys]
    return found


def _context(first_name: str | None) -> dict:
    name = f"{first_name} Rivera" if first_name else None
    return {
        "contact": {"first_name": first_name, "name": name, "email": "dana@example.com"},
        "campaign": {"name": "Execution Success Roadmap", "slug": "execution-roadmap"},
        "consultant": {"name": "Ken Thoreson", "company": "Acumen Management Group"},
        "magnet": {"attached": True, "linked": False},
    }


@pytest.mark.parametrize("first_name", [None, "Dana"])
def test_templates_render_in_the_sandbox(campaign, first_name):
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    for label, source in _templates(campaign):
        rendered = env.from_string(source).render(_context(first_name))
        assert "{{" not in rendered and "{%" not in rendered, label
        assert not re.search(r"\bNone\b(?! of)", rendered), label
        if "text" in label:
            greeting = f"Hi {first_name}," if first_name else "Hi there,"
            assert rendered.startswith(greeting), label
            assert "Ken Thoreson" in rendered, label


def test_html_escapes_contact_values(campaign):
    env = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    rendered = env.from_string(campaign["magnet"]["html"]).render(_context("<b>Dana</b>"))
    assert "<b>Dana</b>" not in rendered
    assert "&lt;b&gt;Dana&lt;/b&gt;" in rendered


def test_last_step_closes_the_loop(campaign):
    last = campaign["steps"][-1]["text"]
    assert "I'll stop here" in last
    for step in campaign["steps"]:
        assert "just checking in" not in step["text"].lower()
        assert "!" not in step["text"]
        assert "?" in step["text"], "each follow-up asks one easy question"
