"""The admin's forms (Flask-WTF: every one carries a CSRF token)."""

from __future__ import annotations

import re
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, MultipleFileField
from wtforms import (
    BooleanField,
    EmailField,
    FieldList,
    Form,
    FormField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp, ValidationError

from .. import campaigns
from ..models import Campaign


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


def _template(form, field) -> None:
    try:
        campaigns.check_template(str(field.label.text), field.data)
    except campaigns.CampaignError as exc:
        raise ValidationError(str(exc)) from exc


def _delay(form, field) -> None:
    try:
        campaigns.parse_delay(field.data or "")
    except campaigns.CampaignError as exc:
        raise ValidationError(str(exc)) from exc


def _window(form, field) -> None:
    try:
        campaigns.parse_window(field.data)
    except campaigns.CampaignError as exc:
        raise ValidationError(str(exc)) from exc


def _size(form, field) -> None:
    try:
        campaigns.parse_size(field.data)
    except campaigns.CampaignError as exc:
        raise ValidationError(str(exc)) from exc


def _addresses(form, field) -> None:
    bad = [a for a in lines(field.data) if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", a)]
    if bad:
        raise ValidationError(f"not an address: {', '.join(bad)}")


def lines(text: str | None) -> list[str]:
    """A textarea's entries: one per line (commas also separate)."""
    return [part.strip() for part in re.split(r"[\n,]", text or "") if part.strip()]


class StepForm(Form):
    """One follow-up of the sequence (a sub-form: the campaign form carries the CSRF token)."""

    after = StringField("Wait after the previous mail", [DataRequired(), _delay], description="30s, 15m, 4h or 3d")
    subject = StringField("Subject", [DataRequired(), Length(max=300), _template])
    text = TextAreaField("Text", [DataRequired(), _template])
    html = TextAreaField("HTML (optional)", [Optional(), _template])


# The values are the campaign file's `triggers.mode`; the first is the default.
TRIGGER_MODES = (
    SelectChoice("address-or-asked", "Mail to the trigger address, or anyone who asks for it by name (default)"),
    SelectChoice("address-only", "Only mail to the trigger address"),
)
DEFAULT_TRIGGER_MODE = TRIGGER_MODES[0].value
# The values are the campaign file's `magnet.delivery`; the first is the default.
DELIVERIES = (
    SelectChoice(campaigns.ATTACH, "Attach the file"),
    SelectChoice(campaigns.LINK, "Send a download link"),
    SelectChoice(campaigns.AUTO, "Attach up to a size, link above it"),
)


class CampaignForm(FlaskForm):
    slug = StringField("Slug (stable id, used in exports)", [
        DataRequired(), Length(max=80), Regexp(r"^[a-z0-9][a-z0-9-]*$", message="lower-case letters, digits, dashes"),
    ])
    name = StringField("Name", [DataRequired(), Length(max=200)])
    active = BooleanField("Active: answer requests for it now")
    addresses = TextAreaField("Trigger addresses", [_addresses], description="One per line. Plus-addressing matches: "
                              "roadmap@ also catches roadmap+x@.")
    keywords = TextAreaField("Trigger keywords", description="One per line; matched in the subject or body, any case.")
    trigger_mode = RadioField("Who gets the magnet", choices=list(TRIGGER_MODES), default=DEFAULT_TRIGGER_MODE)
    magnet_subject = StringField("Subject", [DataRequired(), Length(max=300), _template])
    magnet_text = TextAreaField("Text", [DataRequired(), _template])
    magnet_html = TextAreaField("HTML (optional)", [Optional(), _template],
                                description="Without it, the text is turned into simple HTML.")
    delivery = SelectField("How the magnet travels", choices=list(DELIVERIES), default=campaigns.ATTACH)
    link_above = StringField("Link when the files weigh more than", [Optional(), Length(max=20), _size],
                             description="Only for “Attach up to a size”: e.g. 5MB or 500KB, all files together; "
                                         "empty: the server's default.")
    window = StringField("Sending window (optional)", [Optional(), _window],
                         description="Follow-ups wait for it, e.g. mon-fri 08:00-18:00.")
    timezone = SelectField("Timezone of the window", default="UTC")
    steps = FieldList(FormField(StepForm), min_entries=0)
    preview_contact = StringField("Preview for contact (address; empty: a sample contact)",
                                  [Optional(), Length(max=320)])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = _zones()

    def entry(self) -> dict:
        """The form as one entry of the YAML campaign format."""
        return {
            "slug": (self.slug.data or "").strip(),
            "name": (self.name.data or "").strip(),
            "active": bool(self.active.data),
            "triggers": {"addresses": lines(self.addresses.data), "keywords": lines(self.keywords.data),
                         "mode": self.trigger_mode.data or DEFAULT_TRIGGER_MODE},
            "magnet": {
                "subject": self.magnet_subject.data, "text": self.magnet_text.data,
                "html": self.magnet_html.data or None, "delivery": self.delivery.data or campaigns.ATTACH,
                "link_above": (self.link_above.data or "").strip() or None,
            },
            "steps": [{**s, "html": s.get("html") or None} for s in self.steps.data],
            "sending": {"window": (self.window.data or "").strip() or None, "timezone": self.timezone.data or "UTC"},
        }

    def rearranged(self, action: str) -> CampaignForm:
        """A copy with a step added, moved or removed (the buttons of the step list); nothing is saved."""
        data = {k: v for k, v in self.data.items() if k != "csrf_token"}
        steps = list(data["steps"])
        verb, _, number = action.partition("-")
        index = int(number) if number.isdigit() else -1
        if verb == "add":
            steps.append({"after": "3d", "subject": "", "text": "", "html": ""})
        elif verb == "remove" and 0 <= index < len(steps):
            steps.pop(index)
        elif verb in ("up", "down") and 0 <= index < len(steps):
            there = max(0, min(len(steps) - 1, index + (-1 if verb == "up" else 1)))
            steps.insert(there, steps.pop(index))
        return CampaignForm(formdata=None, data={**data, "steps": steps})


def campaign_data(campaign: Campaign) -> dict:
    """A campaign as the form's initial data."""
    return {
        "slug": campaign.slug, "name": campaign.name, "active": campaign.active,
        "addresses": "\n".join(campaign.trigger_addresses), "keywords": "\n".join(campaign.keywords),
        "trigger_mode": campaign.trigger_mode or DEFAULT_TRIGGER_MODE,
        "magnet_subject": campaign.magnet_subject, "magnet_text": campaign.magnet_text,
        "magnet_html": campaign.magnet_html or "", "window": campaign.window or "", "timezone": campaign.timezone,
        "delivery": campaign.delivery or campaigns.ATTACH,
        "link_above": campaigns.format_size(campaign.link_above) if campaign.link_above else "",
        "steps": [
            {"after": s.after, "subject": s.subject, "text": s.text, "html": s.html or ""} for s in campaign.steps
        ],
    }


_ZONES: list[tuple[str, str]] = []


def _zones() -> list[tuple[str, str]]:
    if not _ZONES:
        _ZONES.extend((z, z) for z in sorted(available_timezones()))
    return _ZONES


class AssetForm(FlaskForm):
    file = FileField("File to attach to the magnet", [FileRequired()])


class AssetNameForm(FlaskForm):
    name = StringField("Name the prospect sees", [Length(max=255)])


class TestSendForm(FlaskForm):
    which = SelectField("Message", default="magnet")


class YamlImportForm(FlaskForm):
    file = FileField("Campaign file (YAML)", [FileRequired(), FileAllowed(["yaml", "yml"], "a .yaml or .yml file")])
    attachments = MultipleFileField("Attachments it names (optional: files already stored are reused)")


class TagsForm(FlaskForm):
    tags = StringField("Tags (comma-separated)", [Length(max=500)])


class CsvUploadForm(FlaskForm):
    file = FileField("CSV file", [FileRequired(), FileAllowed(["csv", "txt", "tsv"], "a .csv file")])


class MappingForm(FlaskForm):
    email = SelectField("Email address column")
    name = SelectField("Name column")
    tags = SelectField("Tags column")
    tag_all = StringField("Also tag every imported contact with", [Optional(), Length(max=100)])

    def set_columns(self, headers: list[str]) -> None:
        options = [(str(i), h or f"column {i + 1}") for i, h in enumerate(headers)]
        self.email.choices = options
        self.name.choices = [("", "(none)"), *options]
        self.tags.choices = [("", "(none)"), *options]


class ReplyFromForm(FlaskForm):
    email = EmailField("Contact's address", [DataRequired(), Email(check_deliverability=False)])
