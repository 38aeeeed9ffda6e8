"""Campaigns: list and order, edit with a live preview, attachments, test sends, YAML in and out."""

from __future__ import annotations

from urllib.parse import quote

from flask import (
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.utils import secure_filename

from .. import campaigns, contacts, queue, stats
from ..extensions import db
from ..models import Campaign
from . import back, bp, confirm, forms, framed, preview
from .forms import AssetForm, AssetNameForm, CampaignForm, TestSendForm, YamlImportForm

NEW_CAMPAIGN = {
    "active": False, "timezone": "UTC", "window": "mon-fri 08:00-18:00", "steps": [],
    "magnet_text": 'Hi {{ contact.first_name or "there" }},\n\nThanks for asking: here it is, attached.\n\n'
                   "{{ consultant.name }}\n{{ consultant.company }}\n",
}


def _campaign(campaign_id: int) -> Campaign:
    return db.session.get(Campaign, campaign_id) or abort(404)


def _here(campaign: Campaign) -> str:
    return url_for("admin.campaign_edit", campaign_id=campaign.id)


@bp.get("/campaigns")
def campaign_list():
    return render_template("admin/campaigns.html", campaigns=campaigns.all_campaigns(db.session),
                           states=stats.enrollment_states(db.session))


@bp.route("/campaigns/new", methods=["GET", "POST"])
def campaign_new():
    return _edit(CampaignForm(data=NEW_CAMPAIGN), None)


@bp.route("/campaigns/<int:campaign_id>", methods=["GET", "POST"])
def campaign_edit(campaign_id: int):
    campaign = _campaign(campaign_id)
    return _edit(CampaignForm(data=forms.campaign_data(campaign)), campaign)


def _edit(form: CampaignForm, campaign: Campaign | None):
    """Save, or re-show the form with a step added, moved or removed (buttons need no JavaScript)."""
    action = request.form.get("action", "save")
    if request.method == "POST" and action != "save":
        return _page(form.rearranged(action), campaign)
    if not form.validate_on_submit():
        if form.is_submitted():
            flash("Not saved: see the fields marked below.", "error")
        return _page(form, campaign, 400 if form.is_submitted() else 200)
    try:
        saved = campaigns.save(db.session, form.entry(), campaign)
    except campaigns.CampaignError as exc:
        db.session.rollback()
        flash(f"Not saved: {exc}", "error")
        return _page(form, campaign and db.session.get(Campaign, campaign.id), 400)
    db.session.commit()
    flash(f"{saved.name} is saved{' and active' if saved.active else ' (not active yet)'}.", "ok")
    return redirect(_here(saved))


def _page(form: CampaignForm, campaign: Campaign | None, status: int = 200):
    extra = {}
    if campaign is not None:
        test_form = TestSendForm()
        steps = [(str(s.position), f"Follow-up {s.position}: {s.subject}") for s in campaign.steps]
        test_form.which.choices = [("magnet", "The magnet"), *steps]
        numbers = stats.campaign_stats(db.session, campaign)
        linked = campaigns.delivery(campaign, current_app.config)[1]
        extra = {"numbers": numbers, "asset_form": AssetForm(), "test_form": test_form, "linked": bool(linked),
                 "default_names": {a.id: campaigns.default_name(a) for a in campaign.assets}}
    return render_template("admin/campaign_edit.html", form=form, campaign=campaign, people_note=stats.PEOPLE_NOTE,
                           **extra), status


@bp.route("/campaigns/preview", methods=["POST"], endpoint="campaign_preview_new")
@bp.route("/campaigns/<int:campaign_id>/preview", methods=["GET", "POST"])
def campaign_preview(campaign_id: int | None = None):
    """The whole sequence rendered for a sample or a real contact, shown in the edit page's sandboxed frame."""
    campaign = _campaign(campaign_id) if campaign_id else None
    data = forms.campaign_data(campaign) if campaign else NEW_CAMPAIGN
    form = CampaignForm() if request.method == "POST" else CampaignForm(formdata=None, data=data)
    asked = (form.preview_contact.data or request.args.get("contact", "")).strip()
    contact = contacts.find(db.session, asked) if asked else None
    mails = preview.sequence(form.entry(), contact or preview.sample_contact(), current_app.config)
    page = render_template("admin/preview_frame.html", mails=mails, contact=contact, asked=asked,
                           assets=[campaigns.attachment_name(a) for a in campaign.assets] if campaign else [],
                           delivery=form.delivery.data or campaigns.ATTACH)
    return framed(make_response(page))


@bp.post("/campaigns/<int:campaign_id>/test")
def campaign_test(campaign_id: int):
    campaign, which = _campaign(campaign_id), request.form.get("which", "magnet")
    position = int(which) if which.isdigit() else None
    try:
        row = campaigns.plan_test(db.session, campaign, current_user.email, position, current_app.config["MAIL_DOMAIN"])
    except campaigns.CampaignError as exc:
        db.session.rollback()
        flash(f"No test sent: {exc}.", "error")
        return redirect(_here(campaign))
    db.session.commit()
    queue.queue_send(row)
    flash(f"A test of the saved {'follow-up ' + which if position else 'magnet'} is on its way to {row.to_address}.",
          "ok")
    return redirect(_here(campaign))


@bp.post("/campaigns/<int:campaign_id>/<any(activate, pause):action>")
def campaign_toggle(campaign_id: int, action: str):
    campaign = _campaign(campaign_id)
    campaigns.set_active(campaign, action == "activate")
    db.session.commit()
    now = "active: requests get the magnet" if campaign.active else "paused: nothing of it goes out"
    flash(f"{campaign.name} is {now}.", "ok")
    return back(url_for("admin.campaign_list"))


@bp.post("/campaigns/<int:campaign_id>/move")
def campaign_move(campaign_id: int):
    campaigns.move_priority(db.session, _campaign(campaign_id), -1 if request.form.get("direction") == "up" else 1)
    db.session.commit()
    return redirect(url_for("admin.campaign_list"))


@bp.post("/campaigns/<int:campaign_id>/assets")
def campaign_asset_add(campaign_id: int):
    campaign, form = _campaign(campaign_id), AssetForm()
    limit = current_app.config["ASSET_MAX_BYTES"]
    try:
        if not form.validate_on_submit():
            raise campaigns.CampaignError("choose a file first")
        upload = form.file.data
        data = upload.read(limit + 1)
        asset = campaigns.add_asset(db.session, campaign, upload.filename or "", data, limit)
    except campaigns.CampaignError as exc:
        return _refused(campaign, f"Not attached: {exc}.")
    db.session.commit()
    flash(f"{asset.filename} is attached to the magnet.", "ok")
    return redirect(_here(campaign))


@bp.post("/campaigns/<int:campaign_id>/assets/<int:asset_id>/name")
def campaign_asset_name(campaign_id: int, asset_id: int):
    campaign, form = _campaign(campaign_id), AssetNameForm()
    try:
        if not form.validate_on_submit():
            raise campaigns.CampaignError("; ".join(form.name.errors) or "the form expired, try again")
        asset = campaigns.name_asset(campaign, asset_id, form.name.data or "") or abort(404)
    except campaigns.CampaignError as exc:
        return _refused(campaign, f"Name not saved: {exc}.")
    db.session.commit()
    flash(f"Prospects get {asset.filename} as {campaigns.attachment_name(asset)}.", "ok")
    return redirect(_here(campaign))


def _refused(campaign: Campaign, message: str):
    """The edit page again, with why a file or its name was refused (400: the request was wrong)."""
    db.session.rollback()
    flash(message, "error")
    campaign = _campaign(campaign.id)
    return _page(CampaignForm(formdata=None, data=forms.campaign_data(campaign)), campaign, 400)


@bp.get("/campaigns/<int:campaign_id>/assets/<int:asset_id>")
def campaign_asset(campaign_id: int, asset_id: int):
    asset = next((a for a in _campaign(campaign_id).assets if a.id == asset_id), None) or abort(404)
    # Always a download, never rendered here: an uploaded .html must not run on our origin.
    # RFC 6266: a safe ASCII name for old clients, the exact one percent-encoded in filename*.
    plain = secure_filename(asset.filename) or "attachment"
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(asset.filename, safe='')}"
    return Response(asset.data, mimetype="application/octet-stream", headers={"Content-Disposition": disposition})


@bp.route("/campaigns/<int:campaign_id>/assets/<int:asset_id>/delete", methods=["GET", "POST"])
def campaign_asset_delete(campaign_id: int, asset_id: int):
    campaign = _campaign(campaign_id)
    asset = next((a for a in campaign.assets if a.id == asset_id), None) or abort(404)
    if request.method == "GET":
        return confirm(f"Remove {asset.filename}?", f"The magnet of {campaign.name} will no longer carry it.",
                       "Remove the attachment", _here(campaign))
    campaigns.remove_asset(campaign, asset_id)
    db.session.commit()
    flash(f"{asset.filename} removed.", "ok")
    return redirect(_here(campaign))


@bp.get("/campaigns/export.yaml")
def campaign_export():
    headers = {"Content-Disposition": "attachment; filename=campaigns.yaml"}
    return Response(campaigns.export_yaml(db.session), mimetype="application/yaml", headers=headers)


@bp.route("/campaigns/import", methods=["GET", "POST"])
def campaign_import():
    form = YamlImportForm()
    if form.validate_on_submit():
        files = {f.filename: f.read() for f in form.attachments.data or [] if f and f.filename}
        try:
            done = campaigns.import_upload(db.session, form.file.data.read().decode("utf-8", "replace"), files)
        except campaigns.CampaignError as exc:
            db.session.rollback()
            flash(f"Nothing imported: {exc}", "error")
            return render_template("admin/campaign_import.html", form=form), 400
        db.session.commit()
        flash(f"Imported {', '.join(c.name for c in done) or 'no campaigns'}.", "ok")
        return redirect(url_for("admin.campaign_list"))
    return render_template("admin/campaign_import.html", form=form)
