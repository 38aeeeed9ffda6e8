"""Generate the "Execution Success Roadmap" PDF, the lead magnet of the default campaign.

Usage::

    python service/assets/roadmap.py [OUT]

OUT defaults to ``roadmap.pdf`` next to this script. The output is deterministic: the same
fpdf2 version always produces the same bytes, so the committed PDF can be checked against a
fresh build.

Only the PDF core fonts are used (no font files needed), so every string must be latin-1.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF, FontFace

# Palette: one accent (steel blue) plus neutrals.
ACCENT = (31, 78, 121)
ACCENT_LIGHT = (196, 214, 232)  # the accent at low strength, for text on the accent band
TINT = (236, 242, 248)  # the accent at very low strength, for fills
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
WHITE = (255, 255, 255)

FONT = "helvetica"
BODY_SIZE = 10
LH = 5.2  # body line height (mm)

TITLE = "Execution Success Roadmap"
SUBTITLE = (
    "How sales leaders turn plans into results through discipline, accountability and control"
)
COMPANY = "Acumen Management Group"
AUTHOR = "Ken Thoreson"
CREATION_DATE = datetime(2026, 1, 1, tzinfo=UTC)


class RoadmapPDF(FPDF):
    """FPDF with the roadmap's running header/footer and a few layout helpers."""

    def __init__(self) -> None:
        super().__init__(orientation="P", unit="mm", format="Letter")
        self.set_margins(left=20, top=24, right=20)
        self.set_auto_page_break(auto=True, margin=20)
        self.set_creation_date(CREATION_DATE)
        self.set_title(TITLE)
        self.set_subject(SUBTITLE)
        self.set_author(f"{AUTHOR}, {COMPANY}")
        self.set_creator(COMPANY)
        self.set_keywords("sales leadership, execution, forecast, coaching, accountability")
        self.set_lang("en-US")
        self.set_display_mode(zoom="fullwidth", layout="continuous")

    # -- running header / footer -------------------------------------------------------------

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_y(11)
        self.set_font(FONT, "B", 7.5)
        self.set_text_color(*ACCENT)
        self.set_char_spacing(0.6)
        self.cell(self.epw / 2, 4, TITLE.upper())
        self.set_char_spacing(0)
        self.set_font(FONT, "", 8)
        self.set_text_color(*MUTED)
        self.cell(self.epw / 2, 4, COMPANY, align="R")
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(self.l_margin, 16.5, self.w - self.r_margin, 16.5)
        self.set_y(self.t_margin)
        self.set_text_color(*INK)

    def footer(self) -> None:
        if self.page_no() == 1:
            return
        self.set_y(-13)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(self.l_margin, self.get_y() - 1.5, self.w - self.r_margin, self.get_y() - 1.5)
        self.set_font(FONT, "", 8)
        self.set_text_color(*MUTED)
        self.cell(self.epw / 2, 5, f"\xa9 {COMPANY} Ltd.  |  Ken Thoreson")
        self.cell(self.epw / 2, 5, f"Page {self.page_no()} of {{nb}}", align="R")

    # -- text helpers -------------------------------------------------------------------------

    def body(self, size: float = BODY_SIZE, style: str = "", color=INK) -> None:
        self.set_font(FONT, style, size)
        self.set_text_color(*color)

    def section_title(self, number: int, kicker: str, title: str) -> None:
        self.start_section(title)
        self.set_font(FONT, "B", 8.5)
        self.set_text_color(*ACCENT)
        self.set_char_spacing(1)
        self.cell(0, 5, f"{number:02d}   {kicker.upper()}", new_x="LMARGIN", new_y="NEXT")
        self.set_char_spacing(0)
        self.ln(1)
        self.set_font(FONT, "B", 22)
        self.set_text_color(*INK)
        self.multi_cell(0, 9.5, title, align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_fill_color(*ACCENT)
        self.rect(self.l_margin, self.get_y() + 1.5, 18, 1.1, style="F")
        self.ln(6.5)

    def h2(self, text: str, space_before: float = 4) -> None:
        if self.will_page_break(space_before + 7 + 3 * LH):
            self.add_page()
        else:
            self.ln(space_before)
        self.set_font(FONT, "B", 12)
        self.set_text_color(*ACCENT)
        self.multi_cell(0, 6, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(1.5)

    def para(self, text: str, size: float = BODY_SIZE, color=INK, after: float = 2.5) -> None:
        self.body(size, color=color)
        self.multi_cell(0, LH, text, align="L", markdown=True, new_x="LMARGIN", new_y="NEXT")
        self.ln(after)

    def bullets(
        self,
        items: list[str],
        x: float | None = None,
        w: float | None = None,
        size: float = BODY_SIZE,
        lh: float = LH,
        gap: float = 1.2,
    ) -> None:
        x = self.l_margin if x is None else x
        w = self.epw if w is None else w
        indent = 5
        self.body(size)
        for item in items:
            y = self.get_y()
            self.set_fill_color(*ACCENT)
            self.rect(x + 0.6, y + lh / 2 - 0.8, 1.6, 1.6, style="F")
            self.set_xy(x + indent, y)
            self.multi_cell(w - indent, lh, item, align="L", markdown=True,
                            new_x="LEFT", new_y="NEXT")
            self.ln(gap)
        self.set_x(self.l_margin)

    def checklist(self, items: list[str], size: float = BODY_SIZE) -> None:
        indent = 7
        self.body(size)
        for item in items:
            y = self.get_y()
            self.set_draw_color(*ACCENT)
            self.set_line_width(0.35)
            self.rect(self.l_margin + 0.5, y + 0.9, 3.4, 3.4)
            self.set_xy(self.l_margin + indent, y)
            self.multi_cell(self.epw - indent, LH, item, align="L", markdown=True,
                            new_x="LMARGIN", new_y="NEXT")
            self.ln(1.6)

    def numbered(self, items: list[str], size: float = BODY_SIZE) -> None:
        indent = 7
        for i, item in enumerate(items, 1):
            y = self.get_y()
            self.set_font(FONT, "B", size)
            self.set_text_color(*ACCENT)
            self.set_xy(self.l_margin, y)
            self.cell(indent, LH, f"{i}.")
            self.body(size)
            self.set_xy(self.l_margin + indent, y)
            self.multi_cell(self.epw - indent, LH, item, align="L", markdown=True,
                            new_x="LMARGIN", new_y="NEXT")
            self.ln(1.2)

    def callout(self, text: str, size: float = 10.5) -> None:
        pad = 4.5
        bar = 1.6
        w = self.epw - bar - 2 * pad
        self.body(size)
        h = self.multi_cell(w, LH + 0.3, text, align="L", markdown=True, dry_run=True,
                            output="HEIGHT")
        total = h + 2 * pad
        if self.will_page_break(total):
            self.add_page()
        x, y = self.l_margin, self.get_y()
        self.set_fill_color(*TINT)
        self.rect(x, y, self.epw, total, style="F")
        self.set_fill_color(*ACCENT)
        self.rect(x, y, bar, total, style="F")
        self.set_xy(x + bar + pad, y + pad)
        self.body(size)
        self.multi_cell(w, LH + 0.3, text, align="L", markdown=True,
                        new_x="LMARGIN", new_y="NEXT")
        self.set_y(y + total + 3)

    def table_grid(
        self,
        rows: list[list[str]],
        col_widths: tuple[float, ...],
        size: float = 9,
        lh: float = 4.4,
        emphasize_first_col: bool = True,
    ) -> None:
        """A zebra-striped table with an accent heading row (fpdf2 table API)."""
        self.body(size)
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        # Tables take their base style from the current font face, fill colour included:
        # unfilled (even) rows must be white, not whatever was drawn last.
        self.set_fill_color(*WHITE)
        first_col = FontFace(emphasis="BOLD", color=ACCENT)
        with self.table(
            col_widths=col_widths,
            width=self.epw,
            text_align="LEFT",
            v_align="TOP",
            line_height=lh,
            padding=(2.2, 2.4),
            headings_style=FontFace(emphasis="BOLD", color=WHITE, fill_color=ACCENT,
                                    size_pt=size),
            borders_layout="HORIZONTAL_LINES",
            cell_fill_color=TINT,
            cell_fill_mode="ROWS",
            markdown=True,
        ) as table:
            for i, data in enumerate(rows):
                row = table.row()
                for j, text in enumerate(data):
                    style = first_col if (emphasize_first_col and i > 0 and j == 0) else None
                    row.cell(text, style=style)
        self.ln(3)
        self.set_text_color(*INK)


# -- content --------------------------------------------------------------------------------

SECTIONS: list[tuple[str, str]] = [
    ("Why execution", "There is no magic"),
    ("The three target areas", "Discipline, accountability, control"),
    ("The weekly cadence", "Map out the week before it starts"),
    ("The forecast meeting", "A number the business can plan on"),
    ("Coaching", "Coaching that changes behavior"),
    ("The 90-day rollout", "Your first 90 days"),
    ("Self-assessment", "Execution scorecard"),
]


def cover(pdf: RoadmapPDF, links: list[int]) -> None:
    pdf.add_page()
    band_h = 128
    pdf.set_fill_color(*ACCENT)
    pdf.rect(0, 0, pdf.w, band_h, style="F")

    x = 24
    pdf.set_xy(x, 26)
    pdf.set_font(FONT, "B", 9)
    pdf.set_text_color(*WHITE)
    pdf.set_char_spacing(2)
    pdf.cell(0, 5, COMPANY.upper())
    pdf.set_char_spacing(0)
    pdf.set_fill_color(*WHITE)
    pdf.rect(x + pdf.c_margin, 34, 14, 0.8, style="F")

    pdf.set_xy(x, 56)
    pdf.set_font(FONT, "B", 38)
    pdf.multi_cell(150, 15, "Execution\nSuccess Roadmap", align="L", new_x="LEFT",
                   new_y="NEXT")
    pdf.ln(5)
    pdf.set_x(x)
    pdf.set_font(FONT, "", 14)
    pdf.set_text_color(*ACCENT_LIGHT)
    pdf.multi_cell(140, 7, SUBTITLE + ".", align="L", new_x="LEFT", new_y="NEXT")

    # Table of contents
    pdf.set_xy(x, band_h + 16)
    pdf.set_font(FONT, "B", 8.5)
    pdf.set_text_color(*ACCENT)
    pdf.set_char_spacing(1.5)
    pdf.cell(0, 5, "INSIDE THIS ROADMAP", new_x="LEFT", new_y="NEXT")
    pdf.set_char_spacing(0)
    pdf.ln(3)
    toc_w = pdf.w - 2 * x
    for i, ((kicker, title), link) in enumerate(zip(SECTIONS, links, strict=True), 1):
        y = pdf.get_y()
        pdf.set_x(x)
        pdf.set_font(FONT, "B", 10.5)
        pdf.set_text_color(*ACCENT)
        pdf.cell(11, 8, f"{i:02d}", link=link)
        pdf.set_font(FONT, "B", 10.5)
        pdf.set_text_color(*INK)
        label_w = pdf.get_string_width(kicker) + 3
        pdf.cell(label_w, 8, kicker, link=link)
        pdf.set_font(FONT, "", 10.5)
        pdf.set_text_color(*MUTED)
        pdf.cell(toc_w - 11 - label_w - 12, 8, title, link=link)
        pdf.set_text_color(*INK)
        pdf.cell(12, 8, str(i + 1), align="R", link=link)
        pdf.set_draw_color(*RULE)
        pdf.set_line_width(0.2)
        pdf.line(x, y + 8, x + toc_w, y + 8)
        pdf.set_xy(x, y + 8)

    # Author block
    pdf.set_xy(x, pdf.h - 44)
    pdf.set_font(FONT, "B", 11)
    pdf.set_text_color(*INK)
    pdf.cell(0, 5.5, AUTHOR, new_x="LEFT", new_y="NEXT")
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 5.5, f"President, {COMPANY} Ltd.", new_x="LEFT", new_y="NEXT")
    pdf.ln(3)
    pdf.set_x(x)
    pdf.set_font(FONT, "I", 10)
    pdf.set_text_color(*ACCENT)
    pdf.cell(0, 5.5, "Move up and move ahead.")
    pdf.set_fill_color(*ACCENT)
    pdf.rect(0, pdf.h - 8, pdf.w, 8, style="F")


def page_why(pdf: RoadmapPDF) -> None:
    pdf.para(
        "Most sales organizations do not fail for lack of ideas. They announce a new business "
        "strategy, launch an exciting marketing concept or a new sales program, define the "
        "initiatives and assign the people. Six months later: nothing. Nothing has changed, and "
        "the cycle of frustration starts again."
    )
    pdf.para(
        "The gap is rarely the plan. It is **execution**: the unglamorous, repeatable work of "
        "checking progress, managing details and following through, every single week. There is "
        "no magic in it, and that is exactly why it works."
    )
    pdf.h2("Your team is watching you")
    pdf.para(
        "Sales teams take their cue from their leader. When a manager fails to show progress on "
        "planned commitments, or lets the details slide, the team picks up on it, and it shows up "
        "in their own performance:"
    )
    pdf.bullets([
        "**Sales calls are no longer crisp.** Less preparation, vaguer next steps.",
        "**Activity levels drop off**, slowly at first and then all at once.",
        "**Negative attitudes build up.** \"This will pass, just like the last initiative.\"",
    ])
    pdf.h2("Lessons from the locker room")
    pdf.para(
        "A professional football coach once shared his weekly schedule with us. Every hour of "
        "the week leading up to Sunday's kickoff was mapped out: practice times, team meetings, "
        "lunches, workouts. Players were expected to be ready and coaches to be prepared with "
        "game plans. By game day, all that was left was the execution."
    )
    pdf.para(
        "Sales leadership works the same way. The Monday meeting, the monthly forecast, the "
        "quarterly review, every coaching session and every training: when they are planned in "
        "advance and held without fail, performance becomes a habit instead of a hope."
    )
    pdf.ln(1)
    pdf.callout(
        "**The leader sets the pace.** Strategy and tactics matter, but it is the sales "
        "manager's weekly habits that create the culture necessary for high performance."
    )
    pdf.h2("Is execution breaking down? Tick what sounds familiar", space_before=2)
    pdf.checklist([
        "Initiatives are announced at the kickoff and rarely mentioned again.",
        "The forecast changes every week, and nobody is surprised.",
        "One-on-ones are the first thing cancelled when the calendar fills up.",
        "Reps could not name the three numbers they are measured on.",
        "Pipeline reviews are status reports, not decisions.",
    ])
    pdf.para(
        "If you ticked two or more, the rest of this roadmap is for you. Start with the weekly "
        "cadence on page 4; it is the fastest way to make change visible.",
        color=MUTED, size=9.5,
    )


AREAS = [
    (
        "Discipline",
        "Training that corrects, molds or perfects the mental faculties or character.",
        "Doing the planned thing at the planned time, especially when it is inconvenient.",
        [
            "Put the weekly cadence (page 4) on the calendar for the whole quarter and treat "
            "each meeting like a customer appointment.",
            "Publish a minimum weekly activity standard for each role: first meetings, "
            "proposals, pipeline added.",
            "Every meeting has a written agenda, starts on time and ends with written outcomes.",
        ],
        "Meetings that move \"just this once\", every week.",
    ),
    (
        "Accountability",
        "Obligated to give a reckoning or explanation for one's actions.",
        "Every commitment has an owner, a date and a moment when it is reviewed out loud.",
        [
            "Close every meeting with who will do what, by when, and write it down.",
            "Open the next meeting by reviewing those commitments, before anything new.",
            "Hold yourself to the same standard: share your own commitments with the team "
            "and report on them.",
        ],
        "Missed commitments that are never mentioned again.",
    ),
    (
        "Control",
        "A standard of comparison for checking the results of an experiment or process.",
        "Knowing, with numbers, whether the plan is working, early enough to change course.",
        [
            "Track three to five leading indicators (activity, pipeline added, stage "
            "conversion) next to revenue.",
            "Compare actuals with plan every Friday on a single page: the scorecard.",
            "Agree on pipeline stage definitions so a number means the same thing for every rep.",
        ],
        "Surprises at month-end.",
    ),
]


def page_areas(pdf: RoadmapPDF) -> None:
    pdf.para(
        "With our clients we share three target areas. Together they set the expectation that "
        "things are going to change, and they describe how successful sales organizations are "
        "actually managed. Each one below has a definition, what it means in a sales team, and "
        "three practices to start this month."
    )
    pdf.ln(1)
    for name, definition, meaning, practices, warning in AREAS:
        top = pdf.get_y()
        x = pdf.l_margin + 6
        w = pdf.epw - 6
        pdf.set_xy(x, top)
        pdf.set_font(FONT, "B", 14)
        pdf.set_text_color(*ACCENT)
        pdf.cell(0, 7, name, new_x="LEFT", new_y="NEXT")
        pdf.set_font(FONT, "I", 9.5)
        pdf.set_text_color(*MUTED)
        pdf.multi_cell(w, 4.8, f"Definition: \"{definition}\"", align="L",
                       new_x="LEFT", new_y="NEXT")
        pdf.ln(1.2)
        pdf.set_x(x)
        pdf.set_font(FONT, "B", 10)
        pdf.set_text_color(*INK)
        pdf.multi_cell(w, LH, meaning, align="L", new_x="LEFT", new_y="NEXT")
        pdf.ln(1.5)
        pdf.bullets(practices, x=x, w=w, size=9.5, lh=4.9, gap=0.9)
        pdf.set_x(x)
        pdf.set_font(FONT, "B", 9)
        pdf.set_text_color(*ACCENT)
        pdf.cell(pdf.get_string_width("Warning sign: ") + 0.5, 5, "Warning sign: ")
        pdf.set_font(FONT, "", 9)
        pdf.set_text_color(*INK)
        pdf.cell(0, 5, warning, new_x="LMARGIN", new_y="NEXT")
        bottom = pdf.get_y() + 1
        pdf.set_fill_color(*ACCENT)
        pdf.rect(pdf.l_margin, top + 1, 1.6, bottom - top - 1, style="F")
        pdf.set_y(bottom + 6)
    pdf.callout(
        "**Why all three?** Discipline without accountability becomes busywork. Accountability "
        "without control turns into opinions. Control without discipline produces reports "
        "nobody acts on. Together they make execution routine.",
        size=10,
    )


def page_cadence(pdf: RoadmapPDF) -> None:
    pdf.para(
        "Like the coach's week, the sales leader's week should be mapped out before it begins. "
        "Use this rhythm as a starting point: adjust times and durations to your team, but keep "
        "every element and keep it on the same days."
    )
    pdf.table_grid(
        [
            ["Day", "Activity", "Time", "Purpose", "Output"],
            ["Monday", "Pipeline review (team)", "45-60 min",
             "New opportunities, stage movement and next steps on each rep's top deals.",
             "Top 3 deals per rep, each with a dated next step."],
            ["Monday", "Weekly priorities", "15 min",
             "Each rep names the three results that will make this a good week.",
             "Written weekly commitments."],
            ["Tuesday", "One-on-ones", "30 min per rep",
             "Individual pipeline, skills, and last week's commitments.",
             "One or two coaching goals per rep."],
            ["Wed - Thu", "Ride-alongs and call coaching", "2-3 calls per rep",
             "Observe live or recorded calls; debrief within 24 hours (page 6).",
             "One strength and one change per call."],
            ["Thursday", "Deal strategy or skills practice", "30-45 min",
             "The team works one stuck deal or rehearses one skill.",
             "A deal plan or a practised skill."],
            ["Friday", "Scorecard review", "30 min",
             "Actuals against plan: activity, pipeline added, revenue.",
             "One-page scorecard; adjustments for next week."],
            ["Friday", "Manager self-review", "15 min",
             "Did I hold every meeting and keep my own commitments?",
             "Next week's calendar locked."],
        ],
        col_widths=(21, 33, 22, 54, 46),
    )
    pdf.h2("The monthly and quarterly rhythm", space_before=2)
    pdf.table_grid(
        [
            ["When", "Activity", "Purpose"],
            ["Monthly", "Forecast meeting",
             "Commit, upside and pipeline by rep, against target (page 5)."],
            ["Monthly", "Skills training",
             "One topic, practised in the room and then observed in the field."],
            ["Quarterly", "Business review",
             "Results against plan, account and territory plans, next quarter's priorities."],
            ["Quarterly", "Recognition",
             "Celebrate execution and effort, not only the closed deals."],
        ],
        col_widths=(22, 40, 114),
    )
    pdf.h2("Ground rules", space_before=1)
    pdf.bullets([
        "Cadence meetings are never cancelled, only moved within the same week.",
        "Reps update the CRM before Monday 9:00. The CRM and the scorecard are the only "
        "sources of truth; no slides.",
        "The manager arrives prepared: you cannot ask for discipline you do not show.",
    ])


def page_forecast(pdf: RoadmapPDF) -> None:
    pdf.para(
        "The forecast meeting is where discipline, accountability and control meet. Hold it "
        "monthly, and weekly during the last month of a quarter. Its purpose is a number the "
        "business can plan on, not a performance."
    )
    pdf.h2("Agenda (60 minutes)", space_before=1)
    pdf.table_grid(
        [
            ["Time", "Item", "What happens"],
            ["0:00-0:05", "Scoreboard",
             "Month and quarter to date against target; last forecast against actual."],
            ["0:05-0:35", "Rep by rep",
             "Commit and upside deals only; what changed since last time and why."],
            ["0:35-0:50", "Gap to target",
             "Where the gap is and which specific actions close it."],
            ["0:50-0:60", "Commitments",
             "Who does what by when; the forecast number is recorded."],
        ],
        col_widths=(24, 34, 118),
    )
    pdf.h2("Forecast categories", space_before=1)
    pdf.table_grid(
        [
            ["Category", "Definition", "Evidence required", "The manager asks"],
            ["Commit", "Closes this period. You would stake your own bonus on it.",
             "Decision maker engaged, budget confirmed, close plan agreed with the customer, "
             "paperwork in motion.",
             "\"What would have to happen for this not to close?\""],
            ["Upside", "Could close this period if specific things go right.",
             "Qualified need and an active sponsor; one or two open items, each with a plan.",
             "\"What exactly must happen, and by when, to move this to commit?\""],
            ["Pipeline", "Qualified, but expected to close in a later period.",
             "A confirmed need and the next meeting on the calendar.",
             "\"What is the next step, and is it booked?\""],
        ],
        col_widths=(22, 44, 60, 50),
    )
    pdf.h2("Rules of the meeting", space_before=1)
    pdf.numbered([
        "If it is not in the CRM before the meeting, it is not in the forecast.",
        "Every commit deal has a next step, a date and a named customer contact.",
        "A deal moves into commit on evidence, never on optimism.",
        "A slipped deal is explained once, briefly: what happened and what we learned.",
        "Track forecast accuracy by rep and aim for commit within 10% of actual.",
        "Tough questions about deals, respect for people. No blame in the room.",
    ])
    pdf.ln(2)
    pdf.callout(
        "**After the meeting:** send the team the forecast number and the list of commitments "
        "within the hour. What gets written down gets reviewed, and what gets reviewed gets done.",
        size=10,
    )


COACH_STEPS = [
    ("Prepare", "Agree with the rep on the call objective and the one skill you will watch."),
    ("Observe", "Let the rep run the call. Take notes and resist the urge to take over."),
    ("Debrief", "Within 24 hours. The rep assesses first; then one strength, one change."),
    ("Commit", "The rep names what they will do differently, and when you will check."),
]

QUESTIONS = [
    ("Before the call", [
        "What do you want the customer to agree to by the end of this call?",
        "What do we know about how they make decisions?",
        "Which objection are you most likely to hear?",
    ]),
    ("After the call", [
        "What went the way you planned? What did not?",
        "If you could replay one moment, which one would it be?",
        "What will you do differently next time?",
    ]),
    ("On a deal", [
        "Who else is involved in the decision, and have we met them?",
        "Why will they act now rather than next quarter?",
        "What is our next step, and who owns it?",
    ]),
    ("On development", [
        "Which part of the sales process feels hardest right now?",
        "What would help you most over the next 30 days?",
        "What should I do more of, or less of, as your manager?",
    ]),
]


def page_coaching(pdf: RoadmapPDF) -> None:
    pdf.para(
        "Training tells people what to do; coaching makes sure it happens in front of customers. "
        "Most managers intend to coach and then get pulled into deals and reports. Put coaching "
        "on the calendar (page 4) and use the same simple loop every time."
    )
    pdf.h2("The four-step coaching loop", space_before=1)
    gap = 4
    n = len(COACH_STEPS)
    box_w = (pdf.epw - gap * (n - 1)) / n
    pad = 3.5
    pdf.body(9)
    text_h = max(
        pdf.multi_cell(box_w - 2 * pad, 4.5, desc, align="L", dry_run=True, output="HEIGHT")
        for _, desc in COACH_STEPS
    )
    box_h = pad + 8 + 6.5 + text_h + pad
    top = pdf.get_y()
    for i, (name, desc) in enumerate(COACH_STEPS):
        x = pdf.l_margin + i * (box_w + gap)
        pdf.set_fill_color(*TINT)
        pdf.rect(x, top, box_w, box_h, style="F")
        pdf.set_fill_color(*ACCENT)
        pdf.rect(x, top, box_w, 1.2, style="F")
        pdf.set_xy(x + pad, top + pad)
        pdf.set_font(FONT, "B", 18)
        pdf.set_text_color(*ACCENT)
        pdf.cell(box_w - 2 * pad, 8, str(i + 1), new_x="LEFT", new_y="NEXT")
        pdf.set_font(FONT, "B", 11)
        pdf.set_text_color(*INK)
        pdf.cell(box_w - 2 * pad, 6.5, name, new_x="LEFT", new_y="NEXT")
        pdf.body(9)
        pdf.multi_cell(box_w - 2 * pad, 4.5, desc, align="L", new_x="LEFT", new_y="NEXT")
    pdf.set_y(top + box_h + 2)

    pdf.h2("Questions that do the coaching for you", space_before=4)
    col_gap = 8
    col_w = (pdf.epw - col_gap) / 2
    for pair in (QUESTIONS[0:2], QUESTIONS[2:4]):
        top = pdf.get_y()
        bottoms = []
        for k, (heading, items) in enumerate(pair):
            x = pdf.l_margin + k * (col_w + col_gap)
            pdf.set_xy(x, top)
            pdf.set_font(FONT, "B", 10)
            pdf.set_text_color(*INK)
            pdf.cell(col_w, 6, heading, new_x="LEFT", new_y="NEXT")
            pdf.set_draw_color(*RULE)
            pdf.set_line_width(0.2)
            pdf.line(x, pdf.get_y() + 0.3, x + col_w, pdf.get_y() + 0.3)
            pdf.ln(2)
            pdf.bullets(items, x=x, w=col_w, size=9.5, lh=4.8, gap=1.2)
            bottoms.append(pdf.get_y())
        pdf.set_y(max(bottoms) + 4)

    pdf.callout(
        "**Two rules of thumb.** Observe at least one call per rep per week, and ask about two "
        "questions for every piece of advice you give. People act on the conclusions they reach "
        "themselves.",
        size=10,
    )


def page_rollout(pdf: RoadmapPDF) -> None:
    pdf.para(
        "Change sticks when it is introduced in order and reinforced every week. This plan rolls "
        "the roadmap out over one quarter in six steps. Resist skipping ahead: each step builds "
        "the habit the next one depends on."
    )
    pdf.table_grid(
        [
            ["Weeks", "Focus", "Key actions", "Done when"],
            ["1-2", "Set expectations",
             "Share the three target areas and why they matter. Take the self-assessment "
             "(page 8). Agree the metrics and pipeline stage definitions.",
             "The team has heard the why; your baseline score is recorded."],
            ["3-4", "Install the cadence",
             "Block the weekly cadence for the whole quarter. Run the first Monday reviews, "
             "one-on-ones and Friday scorecards.",
             "Two full weeks with no cancelled meeting."],
            ["5-6", "Clean the pipeline",
             "Apply the stage definitions to every open deal; re-date or close stale ones. "
             "Hold the first forecast meeting.",
             "Every open deal has a next step and a date."],
            ["7-8", "Start coaching",
             "One observed call per rep per week, using the four-step loop. Write down each "
             "rep's coaching goal.",
             "Every rep has a written coaching goal."],
            ["9-10", "Tighten the forecast",
             "Apply the commit, upside and pipeline rules. Track forecast accuracy by rep.",
             "Commit lands within 15% of actual, on the way to 10%."],
            ["11-13", "Review and reset",
             "Retake the self-assessment and compare with the baseline. Hold the quarterly "
             "business review; set next quarter's priorities.",
             "Scores improved; the next 90 days are planned."],
        ],
        col_widths=(16, 34, 76, 50),
        size=9.2,
        lh=4.6,
    )
    pdf.h2("Keeping the rollout on track", space_before=2)
    pdf.bullets([
        "**Name an owner for every step.** Usually that is you; delegate the admin, not the "
        "leadership.",
        "**Review this plan in your Friday self-review.** Mark each step done, late or at risk.",
        "**Expect resistance around week four.** The novelty has worn off and the results are "
        "not visible yet. Consistency now is what the team will remember.",
        "**Tell the team what you are doing and why.** Announcing the cadence is part of your "
        "own accountability.",
    ])
    pdf.ln(1)
    pdf.callout(
        "**Week 1 starts now.** Block Monday's pipeline review and Friday's scorecard for the "
        "next thirteen weeks before you close this document. It takes five minutes.",
        size=10,
    )


SCORECARD = [
    ("Discipline", [
        "Our weekly meetings happen as scheduled, every week.",
        "Every meeting has a written agenda and ends on time.",
        "Each role has a published minimum activity standard.",
        "I block coaching time before other work fills my calendar.",
        "Every new initiative has a plan, an owner and review dates.",
    ]),
    ("Accountability", [
        "Every meeting ends with written owners and dates.",
        "Commitments are reviewed at the start of the next meeting.",
        "Each rep can name the numbers they are measured on.",
        "Missed commitments are addressed promptly and respectfully.",
        "I share my own commitments with the team and report on them.",
    ]),
    ("Control", [
        "We compare actuals with plan every week, on one page.",
        "Pipeline stages have clear definitions that everyone uses.",
        "Our commit forecast is usually within 10% of actual.",
        "We track leading indicators, not only closed revenue.",
        "We spot problems mid-month, not at month-end.",
    ]),
]

SCORE_BANDS = [
    ("60-75", "Executing well. Protect the habits and raise the bar on your lowest item."),
    ("45-59", "A solid base. Pick your lowest area and focus on it for 30 days."),
    ("30-44", "Real gaps. Start the 90-day plan at week 1."),
    ("15-29", "Reset. Begin with discipline: install the weekly cadence before anything else."),
]


def page_scorecard(pdf: RoadmapPDF) -> None:
    pdf.para(
        "Rate each statement from **1** (rarely true) to **5** (always true) and circle the "
        "number. Be honest; the score is for you. Add up each area, then retake the scorecard "
        "at day 90 and compare.",
        after=1.5,
    )
    row_h = 6.3
    num_w = 8
    r = 2.6
    circle_step = 7.6
    circles_w = 5 * circle_step
    text_w = pdf.epw - num_w - circles_w - 4
    cx0 = pdf.l_margin + pdf.epw - circles_w + circle_step / 2
    n = 0
    for area, statements in SCORECARD:
        pdf.ln(2.5)
        y = pdf.get_y()
        pdf.set_font(FONT, "B", 10.5)
        pdf.set_text_color(*ACCENT)
        pdf.cell(num_w + text_w, 6.5, area.upper())
        pdf.set_font(FONT, "", 7.5)
        pdf.set_text_color(*MUTED)
        pdf.set_xy(pdf.l_margin + pdf.epw - circles_w, y)
        pdf.cell(circles_w / 2, 6.5, "rarely", align="L")
        pdf.cell(circles_w / 2, 6.5, "always", align="R")
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.4)
        pdf.line(pdf.l_margin, y + 6.8, pdf.l_margin + pdf.epw, y + 6.8)
        pdf.set_y(y + 7.2)
        for k, statement in enumerate(statements):
            n += 1
            y = pdf.get_y()
            if k % 2 == 1:
                pdf.set_fill_color(*TINT)
                pdf.rect(pdf.l_margin, y, pdf.epw, row_h, style="F")
            pdf.set_font(FONT, "B", 9)
            pdf.set_text_color(*ACCENT)
            pdf.set_xy(pdf.l_margin + 1, y)
            pdf.cell(num_w - 1, row_h, f"{n}.")
            pdf.body(9.5)
            pdf.cell(text_w, row_h, statement)
            pdf.set_draw_color(*MUTED)
            pdf.set_line_width(0.25)
            pdf.set_font(FONT, "", 7.5)
            pdf.set_text_color(*MUTED)
            for v in range(1, 6):
                cx = cx0 + (v - 1) * circle_step
                cy = y + row_h / 2
                pdf.set_fill_color(*WHITE)
                pdf.circle(cx, cy, r, style="DF")
                pdf.set_xy(cx - r, cy - r)
                pdf.cell(2 * r, 2 * r, str(v), align="C")
            pdf.set_y(y + row_h)

    # Subtotals
    pdf.ln(5)
    labels = [f"{area} (of 25)" for area, _ in SCORECARD] + ["Total (of 75)"]
    gap = 4
    bw = (pdf.epw - gap * 3) / 4
    top = pdf.get_y()
    for i, label in enumerate(labels):
        x = pdf.l_margin + i * (bw + gap)
        total = i == 3
        pdf.set_fill_color(*(ACCENT if total else TINT))
        pdf.rect(x, top, bw, 15, style="F")
        pdf.set_xy(x + 3, top + 2)
        pdf.set_font(FONT, "B", 8.5)
        pdf.set_text_color(*(WHITE if total else ACCENT))
        pdf.cell(bw - 6, 4.5, label)
        pdf.set_draw_color(*(WHITE if total else MUTED))
        pdf.set_line_width(0.3)
        pdf.line(x + 3, top + 12, x + bw - 3, top + 12)
    pdf.set_y(top + 15 + 4)

    pdf.set_font(FONT, "B", 10)
    pdf.set_text_color(*INK)
    pdf.cell(0, 6, "What your total means", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(0.5)
    for band, meaning in SCORE_BANDS:
        pdf.set_font(FONT, "B", 9.5)
        pdf.set_text_color(*ACCENT)
        pdf.cell(16, 5.2, band)
        pdf.body(9.5)
        pdf.cell(0, 5.2, meaning, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.callout(
        "**Want a second opinion on your score?** Reply to the email this roadmap came with "
        "and tell me your lowest area. I read every reply. - Ken",
        size=9.5,
    )


PAGES = [page_why, page_areas, page_cadence, page_forecast, page_coaching, page_rollout,
         page_scorecard]


def build_pdf() -> bytes:
    """Build the roadmap and return the PDF bytes (deterministic)."""
    pdf = RoadmapPDF()
    pdf.alias_nb_pages()
    links = [pdf.add_link(page=i + 2) for i in range(len(SECTIONS))]
    cover(pdf, links)
    for i, ((kicker, title), render) in enumerate(zip(SECTIONS, PAGES, strict=True), 1):
        pdf.add_page()
        expected = i + 1
        if pdf.page_no() != expected:
            raise RuntimeError(
                f"section {i} starts on page {pdf.page_no()}, the cover says {expected}"
            )
        pdf.section_title(i, kicker, title)
        render(pdf)
        if pdf.page_no() != expected:
            raise RuntimeError(f"section {i} ({kicker}) overflows onto page {pdf.page_no()}")
    return bytes(pdf.output())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path(__file__).resolve().with_name("roadmap.pdf")
    data = build_pdf()
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
