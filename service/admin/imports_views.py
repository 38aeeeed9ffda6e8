"""CSV import of contacts: upload → mapping and preview → dry run of the whole file → batches with progress
→ report."""

from __future__ import annotations

from pathlib import Path

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for

from ..extensions import db
from . import bp, csvio
from .forms import CsvUploadForm, ImportMappingForm


def _where() -> Path:
    return csvio.folder(current_app.instance_path)


def _state(token: str) -> csvio.ImportState:
    return csvio.load(_where(), token) or abort(404)


@bp.route("/contacts/import", methods=["GET", "POST"])
def import_upload():
    form = CsvUploadForm()
    if form.validate_on_submit():
        upload = form.file.data
        try:
            state = csvio.store_upload(_where(), upload.filename or "upload.csv", upload.read())
        except csvio.CsvError as exc:
            flash(f"Cannot import that file: {exc}.", "error")
        else:
            return redirect(url_for("admin.import_mapping", token=state.token))
    return render_template("admin/import_upload.html", form=form)


@bp.route("/contacts/import/<token>", methods=["GET", "POST"])
def import_mapping(token: str):
    state = _state(token)
    if state.started:
        return redirect(url_for("admin.import_run", token=token))
    if request.method == "POST" and request.form.get("action") == "encoding":
        return _recode(state, request.form.get("encoding", ""))
    form = ImportMappingForm(data={k: "" if v is None else str(v) for k, v in state.mapping.items() if k != "fields"})
    form.set_columns(state.headers)
    ticked = request.form.getlist("custom") if request.method == "POST" else [
        str(i) for i, _ in state.mapping.get("fields") or []]
    # A hostile value is "not mapped" here; the form's own validation then refuses it with a message.
    mapping = csvio.read_mapping(state.headers, {f: str(getattr(form, f).data or "") for f in csvio.MAPPED}, ticked)
    if form.validate_on_submit() and request.form.get("action") == "start":
        csvio.save(_where(), csvio.dry_run(db.session, _where(), state, mapping, form.tag_all.data or ""))
        db.session.rollback()  # the dry run only read
        return redirect(url_for("admin.import_check", token=token))
    return render_template("admin/import_mapping.html", form=form, state=state, encodings=csvio.encodings(state),
                           rows=csvio.preview(_where(), state, mapping), mapping=mapping,
                           fieldable=csvio.field_columns(state.headers, mapping)[0])


@bp.route("/contacts/import/<token>/check", methods=["GET", "POST"])
def import_check(token: str):
    """The dry run's report: every reject and every change, before anything is written; a POST confirms it."""
    state = _state(token)
    if state.started or not state.checked:
        return redirect(url_for("admin.import_run" if state.started else "admin.import_mapping", token=token))
    if request.method == "POST":  # CSRF is checked app-wide
        csvio.save(_where(), csvio.confirm(state))
        return redirect(url_for("admin.import_run", token=token))
    return render_template("admin/import_check.html", state=state, rejected=csvio.rejected(_where(), state),
                           changes=csvio.changes(_where(), state), shown=csvio.SHOWN)


def _recode(state: csvio.ImportState, encoding: str):
    """Read the file again in another encoding (CSRF is checked app-wide), then show the new preview."""
    try:
        csvio.recode(_where(), state, encoding)
    except csvio.CsvError as exc:
        flash(f"Cannot read it that way: {exc}.", "error")
    return redirect(url_for("admin.import_mapping", token=state.token))


@bp.get("/contacts/import/<token>/run")
def import_run(token: str):
    """Runs the next batch and shows progress; the page reloads itself until the import is done.

    A GET that writes: only an admin reaches it, it only continues an import that admin
    started with a CSRF-checked POST, and a lock makes a double reload harmless.
    """
    where = _where()
    if not _state(token).started:
        return redirect(url_for("admin.import_mapping", token=token))
    with csvio.batch_lock(where, token) as mine:
        state = _state(token)  # read under the lock: another request may have just run a batch
        if mine and not state.finished:
            state = csvio.run_batch(db.session, where, state)
            db.session.commit()
            csvio.save(where, state)
    return render_template("admin/import_run.html", state=state, rejected=csvio.rejected(where, state))


@bp.get("/contacts/import/<token>/rejected.csv")
def import_rejected(token: str):
    state = _state(token)
    headers = {"Content-Disposition": f"attachment; filename=rejected-{token[:8]}.csv"}
    return Response(csvio.rejected_csv(_where(), state), mimetype="text/csv", headers=headers)


@bp.get("/contacts/import/<token>/changes.csv")
def import_changes(token: str):
    state = _state(token)
    headers = {"Content-Disposition": f"attachment; filename=changes-{token[:8]}.csv"}
    return Response(csvio.changes_csv(_where(), state), mimetype="text/csv", headers=headers)
