"""The message catalogues in locale/: the French one complete and compiled, the English one present.

The source strings are English and the default language is French, so a msgid missing from
locale/fr (or a .mo file not recompiled after the .po changed) shows English to French users.
Regenerate with `make messages` (see the Makefile), translate, and commit the .po and .mo files.
"""

import ast
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext, ngettext

LOCALE = Path(settings.BASE_DIR) / "locale"
FR_PO = LOCALE / "fr" / "LC_MESSAGES" / "django.po"
EN_PO = LOCALE / "en" / "LC_MESSAGES" / "django.po"

# %(name)s, %(points)+d, %d, %s... and {{ var }} (none should be left in a blocktranslate msgid).
PLACEHOLDER = re.compile(
    r"%\([^)]+\)[-+ #0]*\d*(?:\.\d+)?[sdifrxXeEgGcaou]|%[-+ #0]*\d*[sdif]|\{\{.*?\}\}"
)


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)  # 0 when singular
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False
    line: int = 0


def parse_po(path: Path) -> tuple[dict[str, str], list[Entry]]:
    """A small PO reader (stdlib only): the header as a dict, then the entries."""
    entries: list[Entry] = []
    entry, key = Entry(), None

    def flush():
        nonlocal entry, key
        if key is not None:
            entries.append(entry)
        entry, key = Entry(), None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            flush()
            continue
        if line.startswith("#~"):
            entry.obsolete = True
            key = key or "obsolete"
            continue
        if line.startswith("#,"):
            if key is not None and key != "comments":
                flush()
            entry.flags |= {f.strip() for f in line[2:].split(",")}
            continue
        if line.startswith("#"):
            continue
        match = re.match(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")$", line)
        if match:
            name, index, text = match.groups()
            if name in ("msgid", "msgctxt") and key is not None and key.startswith("msgstr"):
                flush()  # a new entry without a blank line before it
            value = ast.literal_eval(text)
            entry.line = entry.line or number
            if name == "msgstr":
                key = "msgstr0"
                entry.msgstr[0] = value
            elif name.startswith("msgstr["):
                key = f"msgstr{index}"
                entry.msgstr[int(index)] = value
            else:
                key = name
                setattr(entry, name, value)
            continue
        if line.startswith('"') and key is not None:
            value = ast.literal_eval(line)
            if key.startswith("msgstr"):
                entry.msgstr[int(key[6:])] += value
            else:
                setattr(entry, key, getattr(entry, key) + value)
            continue
        raise AssertionError(f"{path}:{number}: cannot read {raw!r}")
    flush()

    header_entries = [e for e in entries if e.msgid == "" and e.msgctxt is None]
    assert len(header_entries) == 1, f"{path}: no header entry"
    header = header_entries[0]
    assert "fuzzy" not in header.flags, f"{path}: the header is still marked fuzzy"
    fields = {
        name.strip(): value.strip()
        for name, _, value in (
            line.partition(":") for line in header.msgstr[0].splitlines() if line.strip()
        )
    }
    return fields, [e for e in entries if e is not header]


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


@pytest.fixture(scope="module")
def french():
    return parse_po(FR_PO)


@pytest.fixture(scope="module")
def english():
    return parse_po(EN_PO)


def test_both_catalogues_exist_and_are_compiled():
    for code, _name in settings.LANGUAGES:
        po = LOCALE / code / "LC_MESSAGES" / "django.po"
        assert po.is_file(), f"{po} is missing: run `make messages`"
        assert po.with_suffix(".mo").is_file(), (
            f"{po.with_suffix('.mo')} is missing: run `make messages`"
        )
    assert settings.LOCALE_PATHS == [LOCALE]
    assert settings.LANGUAGE_CODE == "fr"


def test_french_header(french):
    header, _entries = french
    assert header["Language"] == "fr"
    assert header["Content-Type"] == "text/plain; charset=UTF-8"
    assert header["Plural-Forms"].replace(" ", "") == "nplurals=2;plural=(n>1);"


def test_english_header(english):
    header, _entries = english
    assert header["Language"] == "en"
    assert header["Content-Type"] == "text/plain; charset=UTF-8"


def test_french_catalogue_is_complete(french):
    _header, entries = french
    assert len(entries) > 300
    problems = []
    for e in entries:
        where = f"line {e.line}: {e.msgid!r}"
        if e.obsolete:
            problems.append(f"{where}: obsolete entry (run makemessages with --no-obsolete)")
        if "fuzzy" in e.flags:
            problems.append(f"{where}: fuzzy")
        expected_forms = [0, 1] if e.msgid_plural is not None else [0]
        if sorted(e.msgstr) != expected_forms:
            problems.append(f"{where}: msgstr forms {sorted(e.msgstr)}, expected {expected_forms}")
        if not all(e.msgstr.values()):
            problems.append(f"{where}: untranslated")
            continue
        # Same placeholders in every form (the singular may drop a count, as in English).
        sources = [e.msgid] if e.msgid_plural is None else [e.msgid, e.msgid_plural]
        for index, text in e.msgstr.items():
            source = sources[min(index, len(sources) - 1)]
            if placeholders(text) != placeholders(source):
                problems.append(
                    f"{where}: placeholders {placeholders(text)} != {placeholders(source)}"
                )
    assert not problems, "\n".join(problems)


def test_english_catalogue_has_the_same_msgids_and_keeps_them(french, english):
    _fr_header, fr_entries = french
    _en_header, en_entries = english
    assert {e.msgid for e in en_entries} == {e.msgid for e in fr_entries}
    assert not [e.msgid for e in en_entries if any(e.msgstr.values()) or "fuzzy" in e.flags]


def test_the_compiled_french_catalogue_matches_the_po(french):
    """A .po edited without `compilemessages` leaves a stale .mo: every msgid must come back
    from gettext as the .po says."""
    _header, entries = french
    stale = []
    with translation.override("fr"):
        for e in entries:
            if e.msgctxt is not None:
                continue
            if e.msgid_plural is None:
                got = [gettext(e.msgid)]
            else:
                got = [ngettext(e.msgid, e.msgid_plural, n) for n in (1, 2)]
            want = [e.msgstr[i] for i in sorted(e.msgstr)]
            if got != want:
                stale.append(f"{e.msgid!r}: .mo gives {got!r}, .po says {want!r}")
    assert not stale, "the .mo is stale, run compilemessages:\n" + "\n".join(stale)


def test_known_strings_in_french():
    from django.contrib import admin

    import loyalty.admin  # noqa: F401  (sets the site header)

    with translation.override("fr"):
        assert str(admin.site.site_header) == "Administration de la plateforme de fidélité"
        assert (
            gettext("%(program)s: your tier has changed") % {"program": "Club"}
            == "Club\u00a0: votre niveau a changé"
        )
        plural = ngettext("Please correct the error below.", "Please correct the errors below.", 2)
        assert plural == "Veuillez corriger les erreurs ci-dessous."
    with translation.override("en"):
        assert str(admin.site.site_header) == "Loyalty platform administration"


def test_tier_changed_text_email_renders_in_french():
    tier = SimpleNamespace(perk_list=["Livraison offerte"], earn_multiplier=Decimal("1.5"))
    context = {
        "member": SimpleNamespace(first_name="Claire", email="claire@example.fr", tier=tier),
        "program": SimpleNamespace(name="Club Lumière"),
        "data": {"from": "Bronze", "to": "Argent"},
        "site_url": "https://example.fr",
    }
    with translation.override("fr"):
        text = render_to_string("emails/tier_changed.txt", context)
        first_time = render_to_string(
            "emails/tier_changed.txt", {**context, "data": {"from": None, "to": "Bronze"}}
        )
    assert "Bonjour Claire," in text
    assert "Votre niveau est passé de Bronze à Argent." in text
    assert "Vos avantages\u00a0:" in text
    assert "- Livraison offerte" in text
    assert "Multiplicateur de points" in text
    assert "Hello" not in text
    assert "tier" not in text
    assert "Vous êtes désormais au niveau Bronze." in first_time

    with translation.override("en"):
        english = render_to_string("emails/tier_changed.txt", context)
    assert "Hello Claire," in english
    assert "Your tier has changed from Bronze to Argent." in english


@pytest.mark.django_db
def test_notification_email_in_the_members_language():
    from members.models import MemberNotification
    from members.notifications import render
    from tests.factories import ProgramFactory, TierFactory, enrol

    program = ProgramFactory(name="Club Lumière")
    TierFactory(program=program, name="Bronze", rank=0)
    french = enrol(program, email="claire@example.fr", first_name="Claire")
    english = enrol(program, email="jane@example.com", first_name="Jane", preferred_language="en")

    def email(member):
        notification = MemberNotification(
            member=member,
            kind=MemberNotification.Kind.TIER_CHANGED,
            key="change-1",
            context={"from": "Bronze", "to": "Argent", "reason": "purchase"},
        )
        return render(notification, member)

    message = email(french)
    assert message.subject == "Club Lumière\u00a0: votre niveau a changé"
    assert "Bonjour Claire," in message.body
    assert "Votre niveau est passé de Bronze à Argent." in message.body
    assert "Votre niveau est passé de Bronze à Argent." in message.alternatives[0][0]

    message = email(english)
    assert message.subject == "Club Lumière: your tier has changed"
    assert "Your tier has changed from Bronze to Argent." in message.body
