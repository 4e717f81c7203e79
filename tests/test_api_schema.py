"""The OpenAPI schema documents every answer of the POS API: the errors every endpoint can give
(as the `Problem` component, application/problem+json, with an example per code), the headers
they carry, and the success shapes the endpoints really return."""

import json
import re

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.exceptions import ValidationError

from members import api as members_api

PROBLEM_REF = "#/components/schemas/Problem"
EVERY_ENDPOINT = {"400", "401", "406", "414", "429", "500", "503"}
WITH_A_BODY = {"413", "415"}


@pytest.fixture(scope="module")
def schema():
    """The schema as served, JSON-decoded (translatable texts rendered)."""
    generated = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(generated))


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_operation_documents_the_errors_every_endpoint_can_answer(schema):
    seen = []
    for name, operation in operations(schema):
        seen.append(operation["operationId"])
        statuses = set(operation["responses"])
        assert statuses >= EVERY_ENDPOINT, (name, EVERY_ENDPOINT - statuses)
        if "requestBody" in operation:
            assert statuses >= WITH_A_BODY, (name, WITH_A_BODY - statuses)
    assert len(seen) == 11, seen  # with the deprecated alias of use_voucher


def test_every_error_response_is_a_problem_with_examples_of_its_status(schema):
    for name, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                assert list(response["content"]) == ["application/json"], (name, status)
                continue
            if status == "414":  # answered by the web server, before the request reaches us
                assert list(response["content"]) == ["text/html"], name
                continue
            assert list(response["content"]) == ["application/problem+json"], (name, status)
            media = response["content"]["application/problem+json"]
            assert media["schema"] == {"$ref": PROBLEM_REF}, (name, status)
            assert response["description"], (name, status)
            assert media["examples"], (name, status)
            for example in media["examples"].values():
                value = example["value"]
                assert value["status"] == int(status), (name, status, value)
                assert value["type"] == f"urn:loyalty:problem:{value['code']}", (name, value)
                assert {"title", "detail", "instance"} <= set(value), (name, value)


def test_error_headers_are_documented(schema):
    for name, operation in operations(schema):
        responses = operation["responses"]
        assert responses["429"]["headers"]["Retry-After"]["required"] is True, name
        assert "Retry-After" in responses["503"]["headers"], name
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True, name


def test_problem_component_has_the_keys_of_an_error(schema):
    problem = schema["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert set(problem["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "code",
        "field",
        "errors",
        "instance",
    }
    # Some errors add keys of their own: extra keys are allowed.
    assert problem.get("additionalProperties", True) is not False
    item = schema["components"]["schemas"]["ProblemFieldError"]
    assert set(item["required"]) == {"field", "code", "detail"}


def codes(operation, status):
    response = operation["responses"].get(status)
    if response is None:
        return set()
    examples = response["content"]["application/problem+json"]["examples"].values()
    return {example["value"]["code"] for example in examples}


def by_id(schema):
    return {operation["operationId"]: operation for _name, operation in operations(schema)}


def test_each_endpoint_documents_its_own_error_codes(schema):
    ops = by_id(schema)
    assert codes(ops["record_purchase"], "409") == {"receipt_conflict", "idempotency_in_progress"}
    assert codes(ops["record_purchase"], "422") == {
        "wrong_currency",
        "lines_mismatch",
        "invalid_occurred_at",
        "unknown_card",
        "member_not_active",
        "idempotency_key_reused",
    }
    assert codes(ops["record_return"], "404") == {"unknown_receipt", "not_found"}
    assert codes(ops["redeem_reward"], "428") == {"idempotency_key_required"}
    assert codes(ops["redeem_reward"], "422") >= {"not_enough_points", "out_of_stock"}
    assert codes(ops["use_voucher"], "409") == {"voucher_already_used"}
    assert codes(ops["consume_voucher"], "409") == {"voucher_already_used"}
    assert codes(ops["member_history"], "404") == {"member_not_found", "not_found"}
    assert codes(ops["quote_purchase"], "409") == set()
    assert codes(ops["enrol_member"], "400") >= {"invalid", "malformed_json"}


def test_idempotency_key_is_required_only_where_the_server_requires_it(schema):
    required = {}
    for _name, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "Idempotency-Key":
                required[operation["operationId"]] = parameter.get("required", False)
    assert required == {
        "enrol_member": False,
        "record_purchase": False,
        "record_return": False,
        "redeem_reward": True,
    }


def test_member_history_is_documented_as_the_paginated_object_it_answers(schema):
    ok = by_id(schema)["member_history"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert page["type"] == "object"
    assert set(page["required"]) == {
        "count",
        "next",
        "previous",
        "results",
        "points_available",
        "points_pending",
    }
    assert page["properties"]["next"]["nullable"] is True
    assert page["properties"]["results"]["items"] == {"$ref": "#/components/schemas/LedgerEntryOut"}


def test_request_bodies_are_closed_and_their_text_has_no_nul(schema):
    """What the parser refuses in every request is written into the schema, so that a
    schema-valid request is never refused for it (loyalty.openapi.document_request_rules)."""
    components = schema["components"]["schemas"]
    for name, operation in operations(schema):
        if "requestBody" not in operation:
            continue
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = components[ref.rsplit("/", 1)[1]]
        assert body["additionalProperties"] is False, name
        for key, prop in body["properties"].items():
            for variant in [prop, *prop.get("oneOf", [])]:
                if variant.get("type") == "string" and variant.get("maxLength") != 0:
                    described = "pattern" in variant or "enum" in variant or "format" in variant
                    assert described, (name, key)
    assert components["LineIn"]["additionalProperties"] is False
    assert components["LineIn"]["properties"]["sku"]["pattern"] == "^[^\\u0000]*$"
    # Answers stay open: a key added to an answer is not a breaking change.
    assert "additionalProperties" not in components["PurchaseResponse"]


SAMPLES = [
    "", "0", "00", "0.0", "0.00", "0.01", "0.001", "0.1", "0.10", "00.05", ".5", "5.", "1e3",
    "-1", "+1", " 1", "1 ", "42.5", "42.50", "42.500", "42.5001", "0000000000042.50",
    "9999999999", "9999999999.99", "99999999999", "1234567.123", "12345678.1", "١٢",
]  # fmt: skip


@pytest.mark.parametrize(
    ("component", "field", "serializer"),
    [
        ("PurchaseRequest", "amount", members_api.PurchaseRequest),
        ("LineIn", "quantity", members_api.LineIn),
        ("LineIn", "unit_price", members_api.LineIn),
    ],
)
def test_decimal_patterns_accept_exactly_what_the_server_accepts(
    schema, component, field, serializer
):
    pattern = re.compile(schema["components"]["schemas"][component]["properties"][field]["pattern"])
    server_field = serializer().fields[field]
    for sample in SAMPLES:
        try:
            server_field.run_validation(sample)
            accepted = True
        except ValidationError:
            accepted = False
        assert bool(pattern.search(sample)) == accepted, (field, sample)


def test_card_numbers_have_their_format(schema):
    purchase = schema["components"]["schemas"]["PurchaseRequest"]["properties"]
    assert purchase["card_number"]["format"] == "card-number"
    lookup = by_id(schema)["lookup_member"]["parameters"]
    assert {p["name"]: p["schema"].get("format") for p in lookup}["card_number"] == "card-number"


def test_the_redeem_alias_of_use_voucher_is_documented_as_deprecated(schema):
    """`POST vouchers/{code}/redeem/` is kept for existing tills: documented like `use/`, with
    the same request and answers, and marked deprecated."""
    use = schema["paths"]["/api/v1/vouchers/{code}/use/"]["post"]
    alias = schema["paths"]["/api/v1/vouchers/{code}/redeem/"]["post"]
    assert (use["operationId"], alias["operationId"]) == ("use_voucher", "consume_voucher")
    assert alias["deprecated"] is True
    assert "deprecated" not in use
    assert alias["requestBody"] == use["requestBody"]
    assert set(alias["responses"]) == set(use["responses"])
