"""The lean check of a purchase body (members.api.lean_purchase) accepts only what the
PurchaseRequest serializer accepts, with the same values, and declines everything else so that
the serializer answers with its errors."""

import itertools
import random
from decimal import Decimal

import pytest

from members.api import PurchaseRequest, lean_purchase
from members.cards import luhn_check_digit

CARD = "912345678901" + luhn_check_digit("912345678901")
BASE = {
    "receipt_id": "PAR01-2026-000123",
    "card_number": CARD,
    "amount": "42.50",
    "currency": "EUR",
    "occurred_at": "2026-11-23T10:15:00+01:00",
    "lines": [
        {"sku": "CREME-50", "category": "beauty", "quantity": "1", "unit_price": "30.00"},
        {"sku": "SAVON-3", "category": "hygiene", "quantity": "2", "unit_price": "6.25"},
    ],
}

# Candidate values per field: accepted, refused, and the edge cases between.
TOP_LEVEL = {
    "receipt_id": [
        "R-1",
        " R-1 ",
        "R-1\n",
        "R/1",
        "R 1",
        "",
        "   ",
        "x" * 64,
        "x" * 65,
        "é",
        12,
        1.5,
        True,
        None,
        ["R-1"],
    ],
    "card_number": [
        CARD,
        f" {CARD} ",
        f"{CARD[:4]} {CARD[4:8]}-{CARD[8:]}",
        CARD[:-1] + str((int(CARD[-1]) + 1) % 10),
        CARD[:-1],
        "",
        "  ",
        None,
        int(CARD),
        "x" * 40,
        True,
    ],
    "amount": [
        "42.50",
        "42.5",
        "42",
        "0",
        "0.00",
        "0.01",
        "0.001",
        "-5.00",
        "10.005",
        "9999999999.99",
        "99999999999.99",
        "042.50",
        " 42.50",
        "42.50 ",
        "1e2",
        "NaN",
        "Infinity",
        "",
        "abc",
        42,
        42.5,
        None,
        True,
    ],
    "currency": ["EUR", "USD", "eur", " EUR", "EURO", "EU", "", 978, None],
    "occurred_at": [
        "2026-11-23T10:15:00+01:00",
        "2026-11-23T09:15:00Z",
        "2026-11-23T10:15:00.123+01:00",
        "2026-11-23 10:15:00+01:00",
        "2026-11-23T10:15:00",
        "2026-11-23",
        "yesterday",
        "",
        None,
        1763889300,
    ],
}
LINE_FIELDS = {
    "sku": ["CREME-50", "", "  ", " A ", "x" * 60, "x" * 61, "a\tb", "a\x00b", 7, None, True],
    "category": ["beauty", "", " beauty ", "y" * 61, "\u00e9picerie", None, 3.5],
    "quantity": [
        "1",
        "1.5",
        "0.001",
        "0.0001",
        "0",
        "-1",
        "1234567",
        "12345678",
        "1.000",
        "01",
        "",
        1,
        1.5,
        None,
    ],
    "unit_price": ["30.00", "30", "0", "0.00", "-1", "30.001", "9999999999.99", "", 30, None],
}


def normalised(value):
    """Decimals by their text (1 and 1.000 are equal numbers, not equal answers)."""
    if isinstance(value, Decimal):
        return ("decimal", str(value))
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


def assert_agrees(body) -> bool:
    """lean_purchase either declines or gives exactly the serializer's validated data."""
    lean = lean_purchase(body)
    serializer = PurchaseRequest(data=body)
    valid = serializer.is_valid()
    if lean is None:
        return False
    assert valid, (body, serializer.errors)
    assert normalised(lean) == normalised(serializer.validated_data), body
    return True


def with_value(field, value):
    body = {**BASE, "lines": [dict(line) for line in BASE["lines"]]}
    body[field] = value
    return body


def test_a_well_formed_purchase_takes_the_lean_path_with_the_serializers_values():
    assert assert_agrees(BASE)
    lean = lean_purchase(BASE)
    assert str(lean["amount"]) == "42.50"
    assert [str(line["quantity"]) for line in lean["lines"]] == ["1.000", "2.000"]


def test_an_anonymous_purchase_without_lines_takes_the_lean_path():
    body = {k: v for k, v in BASE.items() if k not in ("card_number", "lines")}
    assert assert_agrees(body)
    assert assert_agrees({**body, "card_number": None, "lines": []})


@pytest.mark.parametrize(
    ("field", "value"),
    [(field, value) for field, values in TOP_LEVEL.items() for value in values],
)
def test_each_top_level_value_is_judged_as_the_serializer_judges_it(field, value):
    assert_agrees(with_value(field, value))
    body = with_value(field, value)
    del body[field]
    assert_agrees(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [(field, value) for field, values in LINE_FIELDS.items() for value in values],
)
def test_each_line_value_is_judged_as_the_serializer_judges_it(field, value):
    body = with_value("lines", [{**BASE["lines"][0], field: value}])
    assert_agrees(body)
    line = dict(BASE["lines"][0])
    del line[field]
    assert_agrees(with_value("lines", [line]))


@pytest.mark.parametrize(
    "lines", [None, {}, "x", [None], ["x"], [[]], [{}], [BASE["lines"][0]] * 500]
)
def test_odd_line_lists_are_judged_as_the_serializer_judges_them(lines):
    assert_agrees(with_value("lines", lines))


def test_too_many_lines_are_left_to_the_serializer():
    body = with_value("lines", [BASE["lines"][0]] * 501)
    assert lean_purchase(body) is None
    assert not PurchaseRequest(data=body).is_valid()


def test_refused_values_are_left_to_the_serializer():
    for field, value in [("amount", "0.00"), ("card_number", ""), ("occurred_at", "2026-11-23")]:
        assert lean_purchase(with_value(field, value)) is None
        assert not PurchaseRequest(data=with_value(field, value)).is_valid()


def test_random_combinations_agree_with_the_serializer():
    rng = random.Random(20261123)
    fields = list(TOP_LEVEL.items())
    accepted = 0
    for _ in range(400):
        body = {**BASE}
        for field, values in rng.sample(fields, rng.randint(1, 3)):
            body[field] = rng.choice(values)
        body["lines"] = [
            {
                field: rng.choice(values) if rng.random() < 0.3 else BASE["lines"][0][field]
                for field, values in LINE_FIELDS.items()
            }
            for _ in range(rng.randint(0, 3))
        ]
        accepted += assert_agrees(body)
    # Both paths were exercised.
    assert 0 < accepted < 400


def test_every_accepted_amount_shape_keeps_two_decimal_places():
    for whole, cents in itertools.product(["0", "7", "1234567890"], ["", ".5", ".05"]):
        amount = whole + cents
        lean = lean_purchase(with_value("amount", amount))
        if lean is not None:
            assert str(lean["amount"]) == str(Decimal(amount).quantize(Decimal("0.01")))


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "x",
        42,
        {},
        [BASE],
        {**BASE, "note": "x"},
        {**BASE, "lines": [{**BASE["lines"][0], "discount": "1.00"}]},
        {**BASE, "card_number": None},
        {**BASE, "card_number": None, "lines": None},
        {k: v for k, v in BASE.items() if k != "receipt_id"},
        {k: v for k, v in BASE.items() if k != "amount"},
        {**BASE, "receipt_id": "R-\u00e9t\u00e9", "amount": "42.50"},
        {**BASE, "amount": "30.00", "lines": BASE["lines"][:1]},
        {**BASE, "amount": "1.00"},  # lines that do not add up: the service refuses them
    ],
)
def test_odd_bodies_are_judged_as_the_serializer_judges_them(body):
    assert_agrees(body)
