"""Schemathesis hooks of bin/fuzz-api (loaded through schemathesis.toml): the rules of a valid
request that no JSON Schema keyword can state (a card's check digit, a birth date in the past),
so that the requests schemathesis draws as valid really are."""

import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import schemathesis
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from members.cards import CARD_LENGTH, luhn_check_digit  # a pure module: no Django needed

# `format: card-number`: 13 digits, the last a Luhn check digit. Half the time the card of the
# member bin/fuzz-api seeded (FUZZ_CARD), so that requests reach past "no such member".
cards = st.text("0123456789", min_size=CARD_LENGTH - 1, max_size=CARD_LENGTH - 1).map(
    lambda digits: digits + luhn_check_digit(digits)
)
if os.environ.get("FUZZ_CARD"):
    cards = st.one_of(st.just(os.environ["FUZZ_CARD"]), cards)
schemathesis.openapi.format("card-number", cards)


@schemathesis.hook
def map_case(context, case):
    """A birth date may not be in the future (400 invalid): a rule relative to today, which no
    JSON Schema keyword states. A schema-valid enrolment gets a birth date in the past, the
    same day of 1990; a schema-violating one is left as drawn."""
    body = case.body
    if (
        case.meta is not None
        and not case.meta.is_negative_at(ParameterLocation.BODY)
        and isinstance(body, dict)
        and isinstance(body.get("birth_date"), str)
        # The server's today is in its time zone: anything after yesterday in UTC may be future.
        and body["birth_date"] > (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    ):
        drawn = date.fromisoformat(body["birth_date"])
        body["birth_date"] = date(1990, drawn.month, min(drawn.day, 28)).isoformat()
    return case
