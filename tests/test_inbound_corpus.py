"""Classify the labelled real-world corpus in ../shared/corpus, read in place (never copied).

MANIFEST.tsv gives each file's category and, for other/, a `detail` naming what it is.
Per file: the kind must fit the label. In aggregate: `permanent` (some recipient permanent)
must agree with bounce-hard/bounce-soft for at least 95% of the bounce files.
"""

from __future__ import annotations

import csv
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from service.inbound import Classification, classify
from tests.test_inbound import CAMPAIGNS, IDENTITY

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MANIFEST = CORPUS / "MANIFEST.tsv"

if not MANIFEST.is_file():
    pytest.skip(f"labelled corpus not found at {CORPUS} (expected ../shared/corpus beside the "
                "project)", allow_module_level=True)

ROWS = list(csv.DictReader(MANIFEST.open(encoding="utf-8"), delimiter="\t"))
BOUNCES = [row for row in ROWS if row["category"] in ("bounce-hard", "bounce-soft")]
PEOPLE = {"human", "request", "unsubscribe"}
MACHINE = {"bounce", "complaint", "auto_reply", "bulk", "loop"}


@cache
def classified(path: str) -> Classification:
    return classify((CORPUS / path).read_bytes(), CAMPAIGNS, IDENTITY)


def expected_kinds(row: dict[str, str]) -> set[str]:
    """The kinds that fit a row's label."""
    category, detail = row["category"], row["detail"].lower()
    if category in ("bounce-hard", "bounce-soft"):
        return {"bounce"}
    if category == "auto-reply":
        return {"auto_reply"}
    if category == "list-bulk":
        return MACHINE  # never a person; a notification with Auto-Submitted may be auto_reply
    if category in ("human", "human-reply"):
        return PEOPLE
    return _other_kinds(detail)


def _other_kinds(detail: str) -> set[str]:
    if "opt-out/unsubscribe request" in detail:  # Apple Mail's unsubscribe button, not ARF
        return {"unsubscribe", "complaint"}
    if "challenge-response" in detail:
        return {"auto_reply"}
    if "mdn" in detail or "read receipt" in detail:
        return {"auto_reply"}
    if "successful-delivery" in detail:
        return {"auto_reply", "bulk"}  # machine mail, and not a failure
    if "spam-filter" in detail or "virus-filter" in detail:
        return MACHINE
    if "arf" in detail or "complaint" in detail:
        return {"complaint"}
    raise AssertionError(f"no expectation for other/ detail {detail!r}: add one")


def is_permanent(result: Classification) -> bool:
    return any(r["permanent"] for r in (result.bounce or {}).get("recipients", []))


@pytest.mark.parametrize("row", ROWS, ids=[row["path"] for row in ROWS])
def test_corpus_mail_is_classified_as_labelled(row: dict[str, str]):
    result = classified(row["path"])
    assert result.kind in expected_kinds(row), (result.kind, result.reasons, row["detail"])
    if result.kind in ("bounce", "complaint"):
        assert result.bounce is not None and isinstance(result.bounce["recipients"], list)


def test_permanent_agrees_with_hard_and_soft_labels_for_95_percent():
    misses = [
        f"{row['path']}: labelled {row['category']}"
        for row in BOUNCES
        if is_permanent(classified(row["path"])) != (row["category"] == "bounce-hard")
    ]
    agreement = 1 - len(misses) / len(BOUNCES)
    print(f"\npermanent agreement: {agreement:.1%} of {len(BOUNCES)} bounces", *misses, sep="\n  ")
    assert agreement >= 0.95, misses


def test_bounce_recipients_name_the_labelled_address():
    """Where the source states the failed address, we find it (needed to stop the right lead)."""
    stated = [row for row in BOUNCES if row["final_recipient"].strip()]
    missed = []
    for row in stated:
        want = {a.strip().lower() for a in row["final_recipient"].split(",") if a.strip()}
        got = {r["address"] for r in classified(row["path"]).bounce["recipients"]}
        if not want & got:
            missed.append(f"{row['path']}: want {sorted(want)}, got {sorted(map(str, got))}")
    assert len(missed) <= len(stated) * 0.05, missed


def test_confusion_matrix():
    """Label category × kind; printed for the record, thresholds asserted."""
    matrix = Counter((row["category"], classified(row["path"]).kind) for row in ROWS)
    kinds = sorted({kind for _, kind in matrix})
    categories = sorted({row["category"] for row in ROWS})
    lines = ["category".ljust(12) + "".join(k[:11].rjust(12) for k in kinds)]
    lines += [c.ljust(12) + "".join(str(matrix[c, k]).rjust(12) for k in kinds) for c in categories]
    print("\n" + "\n".join(lines))
    people = sum(n for (c, k), n in matrix.items() if c in ("human", "human-reply") and k in PEOPLE)
    assert people == sum(1 for row in ROWS if row["category"] in ("human", "human-reply"))
    assert sum(matrix["bounce-hard", k] + matrix["bounce-soft", k] for k in kinds) == len(BOUNCES)
    assert matrix["bounce-hard", "bounce"] + matrix["bounce-soft", "bounce"] == len(BOUNCES)
