"""Campaigns: list and order, edit with a live preview, the plan of dates, attachments, test sends, YAML."""

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
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from .. import campaigns, enrollments, queue, stats
from ..extensions import db
from ..models import Campaign, utcnow
from . import back, bp, confirm, forms, framed, preview
from .forms import AssetForm, AssetNameForm, CampaignForm, PlanForm, TestSendForm, YamlImportForm

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
    """Save (files chosen in the form too), re-show the form with what to confirm first, or with a step added,
    moved or removed (buttons need no JavaScript)."""
    action = request.form.get("action", "save")
    if request.method == "POST" and action != "save":
        return _page(form.rearranged(action), campaign)
    if not form.validate_on_submit():
        if form.is_submitted():
            flash("Not saved: see the fields marked below.", "error")
        return _page(form, campaign, 400 if form.is_submitted() else 200)
    entry, files = _entry(form, campaign), form.uploads()
    has_files = bool(files) or bool(campaign and campaign.assets)
    warnings = [] if form.save_anyway.data else campaigns.save_warnings(entry, has_files)
    if warnings:  # nothing is saved until the admin says so
        return _page(form, campaign, warnings=warnings)
    try:
        saved = campaigns.save(db.session, entry, campaign)
        _attach(saved, files)
    except campaigns.CampaignError as exc:
        db.session.rollback()
        flash(f"Not saved: {exc}", "error")
        return _page(form, campaign and db.session.get(Campaign, campaign.id), 400)
    db.session.commit()
    attached = f" {', '.join(a.filename for a in saved.assets)} attached." if files else ""
    flash(f"{saved.name} is saved{' and active' if saved.active else ' (not active yet)'}.{attached}", "ok")
    return redirect(_here(saved))


def _entry(form: CampaignForm, campaign: Campaign | None) -> dict:
    """The form as a campaign entry; a new campaign without a slug gets one from its name, shown if the form
    comes back."""
    entry = form.entry()
    if not entry["slug"]:
        entry["slug"] = campaign.slug if campaign else campaigns.free_slug(db.session, entry["name"])
        form.slug.data = entry["slug"]
    return entry


def _attach(campaign: Campaign, files: list[FileStorage]) -> None:
    limit = current_app.config["ASSET_MAX_BYTES"]
    for upload in files:
        campaigns.add_asset(db.session, campaign, upload.filename or "", upload.read(limit + 1), limit)


def _page(form: CampaignForm, campaign: Campaign | None, status: int = 200, warnings: list[str] | None = None):
    extra = {}
    if campaign is not None:
        form.slug.description = "Kept once saved: exports and imports know the campaign by it."
        numbers = stats.campaign_stats(db.session, campaign)
        linked = campaigns.delivery(campaign, current_app.config)[1]
        extra = {"numbers": numbers, "asset_form": AssetForm(), "test_form": _test_form(campaign),
                 "linked": bool(linked), "default_names": {a.id: campaigns.default_name(a) for a in campaign.assets}}
    page = render_template("admin/campaign_edit.html", form=form, campaign=campaign, people_note=stats.PEOPLE_NOTE,
                           warnings=warnings or [], recent=preview.recent_addresses(db.session),
                           days=preview.plan(form.entry(), utcnow(), current_app.config), **extra)
    return page, status


def _test_form(campaign: Campaign, formdata=None) -> TestSendForm:
    """The test-send form, to the address this admin sent the last test to (else their own)."""
    form = TestSendForm(formdata=formdata, to=current_user.test_address or current_user.email)
    steps = [(str(s.position), f"Follow-up {s.position}: {s.subject}") for s in campaign.steps]
    form.which.choices = [("magnet", "The magnet"), *steps]
    return form


@bp.route("/campaigns/preview", methods=["POST"], endpoint="campaign_preview_new")
@bp.route("/campaigns/<int:campaign_id>/preview", methods=["GET", "POST"])
def campaign_preview(campaign_id: int | None = None):
    """The whole sequence, as the bytes that go out, for the sample prospect or a contact, shown in the edit
    page's sandboxed frame."""
    campaign = _campaign(campaign_id) if campaign_id else None
    data = forms.campaign_data(campaign) if campaign else NEW_CAMPAIGN
    form = CampaignForm() if request.method == "POST" else CampaignForm(formdata=None, data=data)
    if request.method == "GET":
        form.preview_contact.data = request.args.get("contact", "")
    shown = preview.frame(db.session, form, campaign, current_app.config)
    return framed(make_response(render_template("admin/preview_frame.html", frame=shown, campaign=campaign)))


@bp.get("/campaigns/<int:campaign_id>/plan")
def campaign_plan(campaign_id: int):
    """When each mail of the saved campaign goes for a request now, or at a moment the admin picks."""
    campaign, form = _campaign(campaign_id), PlanForm(request.args)
    start = ((form.moment(campaign.timezone) if form.validate() else None) or utcnow()).astimezone(
        campaigns.zone(campaign.timezone))
    plan = enrollments.plan_dates(campaign, start, current_app.config["MAGNET_IN_WINDOW"])
    form.start.data = form.start.data or start.replace(tzinfo=None)
    return render_template("admin/campaign_plan.html", campaign=campaign, form=form, plan=plan, start=start,
                           local_time=preview.local_time, steps={s.position: s for s in campaign.steps})


@bp.post("/campaigns/<int:campaign_id>/test")
def campaign_test(campaign_id: int):
    campaign = _campaign(campaign_id)
    form = _test_form(campaign, request.form)
    if not form.validate_on_submit():
        flash(f"No test sent: {'; '.join(form.to.errors + form.which.errors) or 'the form expired, try again'}.",
              "error")
        return redirect(_here(campaign))
    position = int(form.which.data) if form.which.data.isdigit() else None
    row = campaigns.plan_test(db.session, campaign, form.to.data, position, current_app.config["MAIL_DOMAIN"])
    current_user.test_address = row.to_address  # remembered for this admin's next test
    db.session.commit()
    queue.queue_send(row)
    which = f"follow-up {position}" if position else "magnet"
    flash(f"A test of the saved {which} is on its way to {row.to_address}.", "ok")
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
