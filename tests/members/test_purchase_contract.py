"""The purchase, return and quote contracts hold on the fast path: every response body the
POS scenarios produce (anonymous, member, lines, campaign bonus, tier upgrade, replay, return,
partial return, quote, a refusal) validates against the response the OpenAPI schema documents
for its status, with no undocumented key; and the lean check of every purchase body sent
(members.api.lean_purchase) gives what PurchaseRequest gives (tests/members/test_lean_purchase.py
holds the edge bodies)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from jsonschema import Draft202012Validator

from loyalty.models import Campaign
from tests.factories import TierFactory, enrol
from tests.members.test_lean_purchase import assert_agrees

pytestmark = pytest.mark.django_db

PURCHASES = "/api/v1/purchases/"
QUOTE = "/api/v1/purchases/quote/"
RETURNS = "/api/v1/purchases/{receipt_id}/returns/"
TWO_LINES = [
    {"sku": "CREME-50", "category": "beauty", "quantity": "1", "unit_price": "30.00"},
    {"sku": "SAVON-3", "category": "hygiene", "quantity": "2", "unit_price": "6.25"},
]


def as_json_schema(node):
    """An OpenAPI 3.0 schema object as JSON Schema 2020-12: `nullable` becomes a null type,
    and an object with properties admits no other key (a key the schema does not document is
    a break of the contract)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: as_json_schema(schema) for name, schema in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = as_json_schema(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False):
        if "type" in out and "enum" not in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@pytest.fixture(scope="module")
def openapi():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        "paths": schema["paths"],
        "components": {
            "schemas": {
                name: as_json_schema(component)
                for name, component in schema["components"]["schemas"].items()
            }
        },
    }


def assert_documented(openapi, path: str, response) -> None:
    """The response's body validates against what the schema documents for its status."""
    documented = openapi["paths"][path]["post"]["responses"]
    assert str(response.status_code) in documented, (path, response.status_code)
    content = documented[str(response.status_code)]["content"]
    media = response["Content-Type"].split(";")[0]
    assert media in content, (path, response.status_code, media)
    validator = Draft202012Validator(
        {**as_json_schema(content[media]["schema"]), "components": openapi["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, (path, response.json(), [e.message for e in errors])


@pytest.fixture
def program(program):
    """The members' program with a Silver tier that a purchase of 500 reaches at once."""
    TierFactory(
        program=program,
        name="Silver",
        rank=1,
        qualify_threshold=Decimal("500"),
        retain_threshold=Decimal("400"),
        earn_multiplier=Decimal("1.5"),
    )
    return program


def purchase(receipt, *, card=None, amount="42.50", lines=None):
    body = {
        "receipt_id": receipt,
        "amount": amount,
        "currency": "EUR",
        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
    }
    if card is not None:
        body["card_number"] = card
    if lines is not None:
        body["lines"] = lines
    return body


def test_every_scenario_answers_as_the_schema_documents(api, program, member, openapi):
    Campaign.objects.create(
        program=program,
        name="Double points",
        status=Campaign.Status.ACTIVE,
        starts_at=timezone.now() - timedelta(days=10),
        ends_at=timezone.now() + timedelta(days=10),
        effect=Campaign.Effect.MULTIPLIER,
        effect_value=Decimal("2"),
    )
    other = enrol(program, email="louise@example.fr", first_name="Louise")
    card = member.card_number
    paid = purchase("R-MEMBER", card=card, amount="20.00")
    bodies = [
        purchase("R-ANON"),
        purchase("R-ANON-LINES", lines=TWO_LINES),
        paid,
        purchase("R-LINES", card=card, lines=TWO_LINES),
        purchase("R-UPGRADE", card=other.card_number, amount="600.00"),
        paid,  # a replay
        purchase("R-REFUSED", card=card, amount="42.50", lines=TWO_LINES[:1]),  # lines mismatch
    ]
    answers = [api.post(PURCHASES, body, format="json") for body in bodies]
    assert [a.status_code for a in answers] == [201, 201, 201, 201, 201, 200, 422]
    lines = answers[3].json()
    assert any(item["code"] != "base" for item in lines["breakdown"]), lines["breakdown"]
    assert answers[4].json()["tier_upgrade"] == {"from": "Bronze", "to": "Silver"}
    for answer in answers:
        assert_documented(openapi, PURCHASES, answer)
    for body in bodies:
        assert assert_agrees(body), body

    returns = [
        ("R-LINES", {"return_id": "RET-PART", "amount": "12.50"}),  # partial
        ("R-LINES", {"return_id": "RET-PART", "amount": "12.50"}),  # a replay
        ("R-UPGRADE", {"return_id": "RET-ALL", "amount": "600.00"}),  # in full
        ("R-ANON", {"return_id": "RET-ANON", "amount": "42.50"}),
        ("R-MEMBER", {"return_id": "RET-TOO-MUCH", "amount": "99.00"}),  # refused
    ]
    answers = [
        api.post(RETURNS.format(receipt_id=receipt), body, format="json")
        for receipt, body in returns
    ]
    assert [a.status_code for a in answers] == [201, 200, 201, 201, 422]
    for answer in answers:
        assert_documented(openapi, RETURNS, answer)

    quotes = [
        {"amount": "42.50", "currency": "EUR"},
        {"amount": "42.50", "currency": "EUR", "card_number": card, "lines": TWO_LINES},
        {"amount": "42.50", "currency": "USD", "card_number": card},  # refused
    ]
    answers = [api.post(QUOTE, body, format="json") for body in quotes]
    assert [a.status_code for a in answers] == [200, 200, 422]
    for answer in answers:
        assert_documented(openapi, QUOTE, answer)


def test_an_undocumented_key_breaks_the_contract(api, member, openapi):
    """The check itself: a body with a key the schema does not name fails validation."""
    answer = api.post(PURCHASES, purchase("R-1", card=member.card_number), format="json")
    assert_documented(openapi, PURCHASES, answer)
    body = answer.json()
    answer.json = lambda: {**body, "surprise": 1}
    with pytest.raises(AssertionError):
        assert_documented(openapi, PURCHASES, answer)
