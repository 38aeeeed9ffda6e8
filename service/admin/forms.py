"""The admin's forms (Flask-WTF: every one carries a CSRF token)."""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import quote
from zoneinfo import available_timezones

from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, MultipleFileField
from werkzeug.datastructures import FileStorage
from wtforms import (
    BooleanField,
    DateTimeLocalField,
    EmailField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, Regexp, ValidationError

from .. import campaigns, mailboxes
from ..extensions import db
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


def _known_mailbox(form, field) -> None:
    if not mailboxes.exists(db.session, field.data or ""):
        raise ValidationError(f"there is no mailbox {field.data!r}: add it under Mailboxes first")


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
        Optional(), Length(max=campaigns.SLUG_MAX),
        Regexp(r"^[a-z0-9][a-z0-9-]*$", message="lower-case letters, digits, dashes"),
    ], description="Empty: made from the name.")
    name = StringField("Name", [DataRequired(), Length(max=200)])
    active = BooleanField("Active: answer requests for it now")
    mailbox = SelectField("Mailbox", [_known_mailbox], default=mailboxes.DEFAULT, validate_choice=False,
                          description="It answers requests that arrive in this mailbox, and its mail goes out from "
                                      "there: follow-ups already scheduled too.")
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
    preview_contact = StringField("Preview for contact", [Optional(), Length(max=320)],
                                  description="An address, or part of one or of a name; empty: the sample prospect.")
    preview_subject = StringField("As a reply to a request with the subject", [Optional(), Length(max=300)],
                                  description="Empty: the contact's own request, else one with no subject.")
    # Files for the magnet in the same POST as a new campaign (an edited one has its own Attach form).
    files = MultipleFileField("Files to attach to the magnet")
    # Ticked by the "Save anyway" button, after the page showed what looked wrong.
    save_anyway = BooleanField("Save anyway")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = _zones()
        self.mailbox.choices = [SelectChoice(slug, slug) for slug in mailboxes.slugs(db.session)]

    def entry(self) -> dict:
        """The form as one entry of the YAML campaign format."""
        return {
            "slug": (self.slug.data or "").strip(),
            "name": (self.name.data or "").strip(),
            "active": bool(self.active.data),
            "mailbox": self.mailbox.data or mailboxes.DEFAULT,
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
        data = {k: v for k, v in self.data.items() if k not in ("csrf_token", "files", "save_anyway")}
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

    def uploads(self) -> list[FileStorage]:
        """The files chosen in this POST (a form sent without multipart carries only their names)."""
        return [f for f in self.files.data or [] if isinstance(f, FileStorage) and f.filename]


def campaign_data(campaign: Campaign) -> dict:
    """A campaign as the form's initial data."""
    return {
        "slug": campaign.slug, "name": campaign.name, "active": campaign.active, "mailbox": campaign.mailbox,
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


_ZONES: list[SelectChoice] = []


def _zones() -> list[SelectChoice]:
    if not _ZONES:
        _ZONES.extend(SelectChoice(z, z) for z in sorted(available_timezones()))
    return _ZONES


class AssetForm(FlaskForm):
    file = FileField("File to attach to the magnet", [FileRequired()])


class AssetNameForm(FlaskForm):
    name = StringField("Name the prospect sees", [Length(max=255)])


class TestSendForm(FlaskForm):
    which = SelectField("Message", default="magnet")
    # admin@localhost (the first run's login) is a fine place for a test: no dot required after the @.
    to = EmailField("Send it to", [DataRequired(), Length(max=320), Regexp(r"^[^@\s]+@[^@\s]+$",
                                   message="give one address, like you@example.com")],
                    filters=[lambda value: value.strip() if isinstance(value, str) else value],
                    description="Any address; the next test goes to the same one.")


class PlanForm(FlaskForm):
    """The moment a sample request arrives, on the campaign's clock (a GET form: it changes nothing)."""

    class Meta:
        csrf = False

    start = DateTimeLocalField("A request arriving at", [Optional()], format="%Y-%m-%dT%H:%M")

    def moment(self, timezone: str) -> datetime | None:
        """The chosen moment, aware, on the campaign's clock; None when none was chosen."""
        return self.start.data.replace(tzinfo=campaigns.zone(timezone)) if self.start.data else None


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _plain(form, field) -> None:
    # A line break in a From, a host or a password would end up inside a header or an IMAP command.
    if field.data and _CONTROL.search(str(field.data)):
        raise ValidationError("no line breaks, tabs or other control characters")


def _not_new(form, field) -> None:
    if field.data == "new":
        raise ValidationError("“new” is the address of this page: pick another slug")


def _text(size: int, label: str, description: str = "") -> StringField:
    return StringField(label, [Optional(), Length(max=size), _plain], description=description)


def _port(label: str, description: str) -> IntegerField:
    return IntegerField(label, [Optional(), NumberRange(1, 65535)], description=description)


def _pace(label: str, description: str) -> IntegerField:
    return IntegerField(label, [Optional(), NumberRange(1, 1_000_000)], description=description)


def _secret(label: str) -> PasswordField:
    return PasswordField(label, [Optional(), Length(max=4096), _plain])


SECURITY_CHOICES = [SelectChoice("ssl", "SSL/TLS from the start"), SelectChoice("starttls", "STARTTLS"),
                    SelectChoice("none", "None (local test servers)")]
METHOD_CHOICES = [SelectChoice("password", "Password"),
                  SelectChoice("xoauth2", "OAuth2 (XOAUTH2): Gmail, Microsoft 365")]
PROVIDER_CHOICES = [SelectChoice("", "(none)"), SelectChoice("google", "Google"),
                    SelectChoice("microsoft", "Microsoft"), SelectChoice("custom", "Another: give its token URL")]


class MailboxForm(FlaskForm):
    """Every field of a mailbox; a secret left blank keeps the stored one, a ticked box clears it."""

    slug = StringField("Slug (stable id; campaigns name it)", [
        DataRequired(), Length(max=63), Regexp(rf"^{mailboxes.SLUG.pattern}\Z", message="lower-case letters, "
                                               "digits and dashes, starting with a letter or digit"), _not_new,
    ])
    sender = StringField("From", [DataRequired(), Length(max=520), _plain],
                         description="A name and an address, as mail shows it: Ken Thoreson <ken@acumen.example>.")
    imap_host = _text(255, "IMAP server", "Empty: no IMAP; mail is read from a local Maildir (for trying it out).")
    imap_port = _port("IMAP port", "Empty: 993 for SSL/TLS, 143 otherwise.")
    imap_security = SelectField("IMAP security", choices=SECURITY_CHOICES, default="ssl")
    imap_username = _text(320, "IMAP username", "Empty: the From address.")
    imap_folder = _text(200, "Folder to watch", "Empty: INBOX.")
    imap_sent_folder = _text(200, "Sent folder (optional)", "Mail you send by hand from it is seen there too.")
    imap_done_folder = _text(200, "Folder for handled requests (optional)")
    imap_cafile = _text(500, "IMAP CA file (optional)", "A private CA's certificate, as a path on the server.")
    smtp_host = _text(255, "SMTP server", "Empty: mail is written to a local outbox folder, not sent.")
    smtp_port = _port("SMTP port", "Empty: 465 for SSL/TLS, 587 for STARTTLS, 25 for none.")
    smtp_security = SelectField("SMTP security", choices=SECURITY_CHOICES, default="starttls")
    smtp_username = _text(320, "SMTP username", "Empty: the IMAP username.")
    smtp_no_auth = BooleanField("The SMTP server takes mail without a sign-in (a relay)")
    smtp_cafile = _text(500, "SMTP CA file (optional)")
    auth_method = SelectField("Sign in with", choices=METHOD_CHOICES, default="password")
    password = _secret("Password (IMAP and SMTP)")
    clear_password = BooleanField("Remove the stored password")
    provider = SelectField("OAuth2 provider", choices=PROVIDER_CHOICES, default="")
    client_id = _text(500, "OAuth2 client id")
    client_secret = _secret("OAuth2 client secret")
    clear_client_secret = BooleanField("Remove the stored client secret")
    refresh_token = _secret("OAuth2 refresh token")
    clear_refresh_token = BooleanField("Remove the stored refresh token")
    token_url = _text(500, "Token URL (another provider only)")
    per_minute = _pace("Mails per minute", "Empty: the desk's SEND_PER_MINUTE.")
    per_day = _pace("Mails per day", "Empty: the desk's SEND_PER_DAY.")
    warmup_days = _pace("Warm-up days", "A new address starts slowly and reaches its daily pace over these days.")

    def entry(self) -> dict:
        """The form as one entry of the mailbox file (`mailboxes import`)."""
        return {
            "slug": (self.slug.data or "").strip(), "from": (self.sender.data or "").strip(),
            "imap": {"host": _value(self.imap_host), "port": self.imap_port.data, "security": self.imap_security.data,
                     "username": _value(self.imap_username), "folder": _value(self.imap_folder),
                     "sent_folder": _value(self.imap_sent_folder), "done_folder": _value(self.imap_done_folder),
                     "cafile": _value(self.imap_cafile)},
            "smtp": {"host": _value(self.smtp_host), "port": self.smtp_port.data, "security": self.smtp_security.data,
                     "username": "" if self.smtp_no_auth.data else _value(self.smtp_username),
                     "cafile": _value(self.smtp_cafile)},
            "auth": {"method": self.auth_method.data, "provider": self.provider.data or None,
                     "token_url": _value(self.token_url), "client_id": _value(self.client_id),
                     "password": _kept(self.password, self.clear_password),
                     "client_secret": _kept(self.client_secret, self.clear_client_secret),
                     "refresh_token": _kept(self.refresh_token, self.clear_refresh_token)},
            "pace": {"per_minute": self.per_minute.data, "per_day": self.per_day.data,
                     "warmup_days": self.warmup_days.data},
        }


def _value(field) -> str | None:
    return (field.data or "").strip() or None


def _kept(field, clear) -> str | None:
    """None keeps the stored secret, "" removes it; a password's own spaces are its own."""
    return "" if clear.data else field.data or None


def mailbox_data(fields: dict) -> dict:
    """A mailbox (as mailboxes.fields_of gives it) as the form's initial data; secrets stay out of the page."""
    data = {name: value for name, value in fields.items() if name not in mailboxes.SECRET_NAMES}
    data.update(sender=_sender(fields["from_name"], fields["from_address"]), provider=fields["provider"] or "",
                smtp_no_auth=fields["smtp_username"] == "")
    return data


def _sender(name: str, address: str) -> str:
    # Quoted, a name with a comma or a dot reads back as one name (RFC 5322 §3.2.4).
    if not name:
        return address
    return f'"{quote(name)}" <{address}>' if re.search(r'[()<>@,;:\\".\[\]]', name) else f"{name} <{address}>"


class ClockForm(FlaskForm):
    """The signed-in admin's own clock and daily digest."""

    timezone = SelectField("Your timezone", validators=[DataRequired()])
    digest = BooleanField("Send me a daily digest")
    digest_hour = SelectField("At", coerce=int, choices=[SelectChoice(h, f"{h:02d}:00") for h in range(24)], default=8)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = _zones()


class ImportMappingForm(MappingForm):
    """MappingForm's columns and the company's; the columns kept as custom fields are ticked boxes beside it
    (csvio.read_mapping reads them, and ignores any that is no such column)."""

    company = SelectField("Company column")

    def set_columns(self, headers: list[str]) -> None:
        super().set_columns(headers)
        self.company.choices = list(self.name.choices)


class FieldEntryForm(Form):
    """One custom field on the contact page (a sub-form: the details form carries the CSRF token)."""

    name = StringField("Field name", [Optional(), Length(max=60)])
    value = StringField("Value", [Optional(), Length(max=500)])


class ContactDetailsForm(FlaskForm):
    company = StringField("Company", [Optional(), Length(max=200)])
    custom = FieldList(FormField(FieldEntryForm), min_entries=0, max_entries=40)

    def pairs(self) -> list[tuple[str, str]]:
        """The fields as typed, (name, value); a row without a name is no field."""
        return [(e["name"].strip(), e["value"]) for e in self.custom.data if (e["name"] or "").strip()]


def details_data(company: str | None, fields: dict, blank: int = 3) -> dict:
    """A contact's company and fields as the details form's data, with `blank` empty rows to add fields in."""
    rows = [{"name": name, "value": value} for name, value in fields.items()]
    return {"company": company or "", "custom": rows + [{"name": "", "value": ""}] * blank}
