"""CSV import of contacts: upload → mapping and preview → batches with progress → report."""

from __future__ import annotations

from pathlib import Path

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for

from ..extensions import db
from . import bp, csvio
from .forms import CsvUploadForm, MappingForm


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
    form = MappingForm(data={k: "" if v is None else str(v) for k, v in state.mapping.items()})
    form.set_columns(state.headers)
    # A hostile value is "not mapped" here; the form's own validation then refuses it with a message.
    picked = ((f, str(getattr(form, f).data or "")) for f in ("email", "name", "tags"))
    mapping = {k: int(v) if v.isdigit() else None for k, v in picked}
    if form.validate_on_submit() and request.form.get("action") == "start":
        csvio.save(_where(), csvio.start(_where(), state, mapping, form.tag_all.data or ""))
        return redirect(url_for("admin.import_run", token=token))
    rows = csvio.preview(_where(), state, mapping)
    return render_template("admin/import_mapping.html", form=form, state=state, rows=rows,
                           encodings=csvio.encodings(state))


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
