"""How the magnet travels (attach, link, or attach up to a size), and the name the prospect sees on each
file: in the campaign file (YAML) and in the admin's editor."""

from __future__ import annotations

import io
import re

import pytest
import yaml

from service import campaigns
from service.extensions import db
from tests.conftest import DEFAULT_YAML, PDF
from tests.test_admin_campaigns import FORM, _campaign
from tests.test_admin_support import post, signed_in, text

ROADMAP = DEFAULT_YAML.read_text()


def _with_magnet(extra: str, attachments: str = "[roadmap.pdf]") -> str:
    """The default campaign file with `extra` lines under `magnet:` and its attachments replaced."""
    indent = "      "
    lines = "".join(f"{indent}{line}\n" for line in extra.splitlines())
    return ROADMAP.replace(f"{indent}attachments: [roadmap.pdf]\n", f"{lines}{indent}attachments: {attachments}\n")


def _import(app, document: str) -> list:
    with app.app_context():
        done = campaigns.import_yaml(db.session, document, DEFAULT_YAML.parent)
        db.session.commit()
        return [(c.delivery, c.link_above, [(a.filename, a.display_name) for a in c.assets]) for c in done]


def _export(app) -> str:
    with app.app_context():
        return campaigns.export_yaml(db.session)


def test_a_default_campaign_exports_as_before(world):
    magnet = yaml.safe_load(_export(world))["campaigns"][0]["magnet"]
    assert "delivery" not in magnet and "link_above" not in magnet
    assert magnet["attachments"] == ["roadmap.pdf"]


def test_delivery_link_above_and_file_names_round_trip(world):
    document = _with_magnet("delivery: auto\nlink_above: 500KB",
                            "[{file: roadmap.pdf, name: Execution-Success-Roadmap-2026.pdf}]")
    assert _import(world, document) == [("auto", 500 * 1024, [("roadmap.pdf", "Execution-Success-Roadmap-2026.pdf")])]
    first = _export(world)
    magnet = yaml.safe_load(first)["campaigns"][0]["magnet"]
    assert (magnet["delivery"], magnet["link_above"]) == ("auto", "500KB")
    assert magnet["attachments"] == [{"file": "roadmap.pdf", "name": "Execution-Success-Roadmap-2026.pdf"}]
    _import(world, first)
    assert _export(world) == first


def test_a_re_import_keeps_the_files_rows_so_links_already_sent_still_work(world):
    with world.app_context():
        before = campaigns.by_slug(db.session, "execution-roadmap").assets[0].id
    _import(world, _with_magnet("delivery: link"))
    with world.app_context():
        [asset] = campaigns.by_slug(db.session, "execution-roadmap").assets
        assert (asset.id, asset.data) == (before, PDF)


@pytest.mark.parametrize(("value", "size"), [("500KB", 512000), ("5MB", 5242880), ("5 mb", 5242880),
                                             (1048576, 1048576), ("1.5MB", 1572864), ("700", 700)])
def test_sizes_read_as_bytes_and_write_back_the_same(value, size):
    assert campaigns.parse_size(value) == size
    assert campaigns.parse_size(campaigns.format_size(size)) == size


@pytest.mark.parametrize(("extra", "attachments", "error"), [
    ("delivery: email", "[roadmap.pdf]", "campaign 'execution-roadmap' magnet: delivery 'email' must be one of "
                                         "attach, link, auto"),
    ("delivery: auto\nlink_above: 5 parsecs", "[roadmap.pdf]", "link_above '5 parsecs' must look like 500KB or 5MB"),
    ("delivery: auto\nlink_above: 0", "[roadmap.pdf]", "must be more than nothing"),
    ("", "[{file: roadmap.pdf, name: ../evil.pdf}]", "must be a plain file name"),
    ("", f"[{{file: roadmap.pdf, name: {'x' * 256}.pdf}}]", "is longer than 255 characters"),
    ("", "[{name: Roadmap.pdf}]", "'file' is required"),
    ("", "[roadmap.pdf, roadmap.pdf]", "'roadmap.pdf' is listed twice"),
])
def test_invalid_delivery_sizes_and_names_are_refused_clearly(world, extra, attachments, error):
    with world.app_context(), pytest.raises(campaigns.CampaignError, match=re.escape(error)):
        campaigns.import_yaml(db.session, _with_magnet(extra, attachments), DEFAULT_YAML.parent)


def test_an_upload_may_name_files_in_the_mapping_form_but_never_paths(world):
    client = signed_in(world)
    good = _with_magnet("delivery: link", "[{file: roadmap.pdf, name: The Roadmap.pdf}]")
    response = post(client, "/admin/campaigns/import", {"file": (io.BytesIO(good.encode()), "c.yaml")},
                    content_type="multipart/form-data", follow_redirects=True)
    assert "Imported Execution Success Roadmap." in text(response)
    saved = _campaign(world, "execution-roadmap")
    assert saved.delivery == "link" and saved.assets[0].display_name == "The Roadmap.pdf"
    bad = _with_magnet("", "[{file: ../../etc/passwd, name: x.pdf}]")
    response = post(client, "/admin/campaigns/import", {"file": (io.BytesIO(bad.encode()), "c.yaml")},
                    content_type="multipart/form-data", follow_redirects=True)
    assert "give a file name, not a path" in text(response)


def test_auto_links_the_files_only_above_the_campaigns_size(world):
    with world.app_context():
        campaign = campaigns.by_slug(db.session, "execution-roadmap")
        campaign.delivery, campaign.link_above = campaigns.AUTO, len(PDF)
        assert campaigns.delivery(campaign, world.config) == (list(campaign.assets), [])
        campaign.link_above = len(PDF) - 1
        assert campaigns.delivery(campaign, world.config) == ([], list(campaign.assets))


def test_the_editor_saves_how_the_magnet_travels(world):
    client = signed_in(world)
    campaign = _campaign(world, "execution-roadmap")
    page = text(client.get(f"/admin/campaigns/{campaign.id}"))
    assert "How the magnet travels" in page and "Attach up to a size, link above it" in page
    assert re.search(r'<option selected value="attach">Attach the file', page)
    response = post(client, f"/admin/campaigns/{campaign.id}",
                    {**FORM, "delivery": "auto", "link_above": "2MB", "action": "save"})
    assert response.status_code == 302
    saved = _campaign(world, "execution-roadmap")
    assert (saved.delivery, saved.link_above) == ("auto", 2 * 1024 * 1024)
    page = text(client.get(f"/admin/campaigns/{campaign.id}"))
    assert re.search(r'<option selected value="auto">', page) and 'value="2MB"' in page
    bad = post(client, f"/admin/campaigns/{campaign.id}", {**FORM, "delivery": "auto", "link_above": "big",
                                                           "action": "save"})
    assert bad.status_code == 400 and "size &#39;big&#39; must look like 500KB or 5MB" in text(bad)
    assert _campaign(world, "execution-roadmap").link_above == 2 * 1024 * 1024


def test_the_editor_names_each_file_for_the_prospect(world):
    client = signed_in(world)
    campaign = _campaign(world, "execution-roadmap")
    asset_id = campaign.assets[0].id
    page = text(client.get(f"/admin/campaigns/{campaign.id}"))
    assert "Name the prospect sees" in page and 'placeholder="Execution-Success-Roadmap.pdf"' in page
    url = f"/admin/campaigns/{campaign.id}/assets/{asset_id}/name"
    assert client.post(url, data={"name": "Roadmap.pdf"}).status_code == 400  # no CSRF token, no change
    response = post(client, url, {"name": " Your Roadmap.pdf "}, follow_redirects=True)
    assert "Prospects get roadmap.pdf as Your Roadmap.pdf." in text(response)
    assert _campaign(world, "execution-roadmap").assets[0].display_name == "Your Roadmap.pdf"
    refused = post(client, url, {"name": "../../Roadmap.pdf"}, follow_redirects=True)
    assert "Name not saved" in text(refused) and "must be a plain file name" in text(refused)
    post(client, url, {"name": ""})
    assert _campaign(world, "execution-roadmap").assets[0].display_name is None
