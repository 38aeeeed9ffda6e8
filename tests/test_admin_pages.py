"""Every admin page renders for a signed-in admin, on an empty desk and on a busy one."""

from __future__ import annotations

import re

from sqlalchemy import select

from service.extensions import db
from service.models import Campaign, Contact, InboundMessage, Outbound
from tests.test_admin_support import receive, signed_in, text
from tests.world import mail


def _pages(app) -> list[str]:
    with app.app_context():
        campaign = db.session.scalar(select(Campaign.id))
        contact = db.session.scalar(select(Contact.id))
        message = db.session.scalar(select(InboundMessage.id))
        row = db.session.scalar(select(Outbound.id).order_by(Outbound.id.desc()))
    pages = ["/admin/", "/admin/contacts", "/admin/campaigns", "/admin/campaigns/new", "/admin/review",
             "/admin/sends", "/admin/sends?state=problem", "/admin/sends?state=pending", "/admin/contacts/import",
             "/admin/campaigns/import"]
    if campaign:
        pages += [f"/admin/campaigns/{campaign}", f"/admin/campaigns/{campaign}/preview"]
    if contact:
        pages += [f"/admin/contacts/{contact}", f"/admin/contacts/{contact}/erase",
                  f"/admin/contacts/{contact}/unsubscribe"]
    if message:
        pages += [f"/admin/inbound/{message}", f"/admin/inbound/{message}/body"]
    if row:
        pages += [f"/admin/outbound/{row}", f"/admin/outbound/{row}/body"]
    return pages


def test_every_page_renders_on_a_busy_desk(world):
    receive(world, mail())
    stranger = mail(sender="Stranger <s@else.example>", subject="hello", body="Who are you?", to="ken@acumen.example")
    receive(world, stranger)
    with world.app_context():  # a test send belongs to no contact: pages listing sends must cope
        from service import campaigns

        row = campaigns.plan_test(db.session, campaigns.by_slug(db.session, "execution-roadmap"),
                                  "alice@acumen.example", None, "acumen.example")
        row.state, row.smtp_response = "failed", "550 no such user"
        db.session.commit()
    client = signed_in(world)
    for page in _pages(world):
        response = client.get(page)
        assert response.status_code == 200, (page, text(response)[:2000])
        assert "<script" not in text(response).lower(), page


def test_every_page_renders_on_an_empty_desk_with_a_next_step(app):
    from service import users

    with app.app_context():
        users.create(db.session, "alice@acumen.example", "correct horse battery")
        db.session.commit()
    client = signed_in(app)
    for page in _pages(app):
        assert client.get(page).status_code == 200, page
    dashboard = text(client.get("/admin/"))
    assert "No requests yet" in dashboard and "The poller has not run yet" in dashboard
    assert re.search(r"No contacts yet.*Import it from a CSV file", text(client.get("/admin/contacts")), re.S)
    assert "Create your first campaign" in text(client.get("/admin/campaigns"))
