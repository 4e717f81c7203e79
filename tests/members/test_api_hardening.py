"""What a careless till or an attacker sends to the POS API gets a problem-details answer,
never a 500 or an HTML page, and writes nothing."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.translation import gettext, override

from members.models import Member, PointsEntry, Purchase
from tests.members.helpers import assert_problem

pytestmark = pytest.mark.django_db

URL = "/api/v1/purchases/"


def body(member=None, **fields):
    out = {
        "receipt_id": "R-1",
        "amount": "42.50",
        "currency": "EUR",
        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
    }
    if member is not None:
        out["card_number"] = member.card_number
    out.update(fields)
    return out


def post_raw(api, raw: bytes | str, url=URL, content_type="application/json"):
    return api.post(url, raw, content_type=content_type)


def assert_nothing_written():
    assert Purchase.objects.count() == 0
    assert PointsEntry.objects.filter(kind=PointsEntry.Kind.EARN).count() == 0


# Bodies the JSON parser refuses -----------------------------------------------------------------


def test_json_nested_five_thousand_deep_is_a_problem(api):
    raw = '{"receipt_id": ' + "[" * 5000 + "]" * 5000 + "}"
    assert_problem(post_raw(api, raw), 400, "malformed_json")
    assert_nothing_written()


def test_json_nested_deeper_than_the_limit_is_a_problem(api, member):
    deep = "x"
    for _ in range(20):
        deep = [deep]
    response = api.post(URL, body(member, lines=[{"sku": deep}]), format="json")
    assert_problem(response, 400, "malformed_json")
    assert_nothing_written()


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_not_json_are_refused(api, member, constant):
    raw = json.dumps(body(member)).replace('"42.50"', constant)
    assert_problem(post_raw(api, raw), 400, "malformed_json")


def test_a_nul_character_in_a_body_string_is_a_problem(api, member):
    response = api.post(URL, body(member, receipt_id="R-\u00001"), format="json")
    problem = assert_problem(response, 400, "malformed_json")
    assert "NUL" in problem["detail"]
    assert_nothing_written()


def test_a_nul_character_in_a_key_is_a_problem(api, member):
    response = api.post(URL, {**body(member), "x\u0000": "1"}, format="json")
    assert_problem(response, 400, "malformed_json")


# The URL and headers ------------------------------------------------------------------------


def test_a_nul_character_in_a_query_parameter_is_a_problem(api):
    response = api.get("/api/v1/members/lookup/", {"card_number": "912\x00345"})
    assert_problem(response, 400, "invalid", field="card_number")


def test_a_nul_character_in_a_path_segment_is_a_problem(api):
    response = api.get("/api/v1/vouchers/AB%00CD/")
    assert_problem(response, 400, "invalid", field="code")


def test_a_nul_character_in_the_api_key_is_refused(db):
    client = Client(HTTP_AUTHORIZATION="Api-Key abc\x00def.xyz")
    assert_problem(client.get("/api/v1/rewards/"), 401, "authentication_failed")


def test_an_unknown_api_path_is_a_problem(api):
    for url in ("/api/v1/nowhere/", "/api/v2/purchases/", "/api/"):
        problem = assert_problem(api.get(url), 404, "not_found")
        assert problem["instance"] == url


def test_an_api_path_without_its_slash_is_a_problem_not_a_redirect(api, member):
    response = api.post("/api/v1/purchases", body(member), format="json")
    assert_problem(response, 404, "not_found")
    assert_nothing_written()


def test_a_method_the_endpoint_does_not_take_is_a_problem_with_allow(api):
    response = api.delete(URL)
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_a_body_over_djangos_upload_limit_is_a_413_problem(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.POS_API_MAX_BODY_BYTES = 64 * 1024
    raw = json.dumps({**body(), "padding": "x" * 5000})
    assert_problem(post_raw(api, raw), 413, "body_too_large")
    form = api.post(URL, "a=" + "x" * 5000, content_type="application/x-www-form-urlencoded")
    assert form.status_code in (413, 415)
    assert form["Content-Type"].startswith("application/problem+json")
    assert_nothing_written()


def test_a_body_over_the_pos_limit_is_a_413_problem(api, settings):
    settings.POS_API_MAX_BODY_BYTES = 1000
    raw = json.dumps({**body(), "padding": "x" * 5000})
    assert_problem(post_raw(api, raw), 413, "body_too_large")


def test_a_server_error_under_api_is_a_problem(db, settings):
    settings.ROOT_URLCONF = "tests.members.failing_urls"
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/boom/")
    problem = assert_problem(response, 500, "server_error")
    assert "ZeroDivisionError" not in response.text
    assert problem["instance"] == "/api/v1/boom/"


def test_a_server_error_outside_api_stays_an_html_page(db, settings):
    settings.ROOT_URLCONF = "tests.members.failing_urls"
    settings.DEBUG = False
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    assert not response["Content-Type"].startswith("application/problem+json")


# Times ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moment",
    [
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:30:00Z",
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ],
)
def test_a_time_at_the_ends_of_the_calendar_is_refused(api, member, moment):
    purchase = body(member, occurred_at=moment)
    quote = {k: v for k, v in purchase.items() if k != "receipt_id"}
    for url, sent in ((URL, purchase), ("/api/v1/purchases/quote/", quote)):
        response = api.post(url, sent, format="json")
        assert_problem(response, 400, "invalid", field="occurred_at")
    assert_nothing_written()


def test_a_day_that_does_not_exist_is_refused(api, member):
    response = api.post(URL, body(member, occurred_at="2026-02-30T10:00:00+01:00"), format="json")
    assert_problem(response, 400, "invalid", field="occurred_at")


def test_a_return_at_the_end_of_the_calendar_is_refused(api, member):
    assert api.post(URL, body(member), format="json").status_code == 201
    response = api.post(
        f"{URL}R-1/returns/",
        {"return_id": "X-1", "amount": "1.00", "occurred_at": "9999-12-31T23:59:59-01:00"},
        format="json",
    )
    assert_problem(response, 400, "invalid", field="occurred_at")


# Money and identifiers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount", ["1e3", "1E3", "+42.50", "-1", " 42.50", "42.", ".5", "42.505", "4_2", "0x10"]
)
def test_an_amount_in_any_form_but_a_decimal_string_is_refused(api, member, amount):
    response = api.post(URL, body(member, amount=amount), format="json")
    assert_problem(response, 400, "invalid", field="amount")
    assert_nothing_written()


@pytest.mark.parametrize("amount", [1000, 42.5, True])
def test_an_amount_as_a_json_number_is_refused(api, member, amount):
    response = api.post(URL, body(member, amount=amount), format="json")
    problem = assert_problem(response, 400, "invalid", field="amount")
    assert problem["errors"][0]["code"] == "not_a_string"
    assert_nothing_written()


def test_a_line_price_in_exponent_form_is_refused(api, member):
    lines = [{"sku": "A", "quantity": "1", "unit_price": "4.25e1"}]
    response = api.post(URL, body(member, lines=lines), format="json")
    assert_problem(response, 400, "invalid", field="lines.0.unit_price")


@pytest.mark.parametrize("field", ["receipt_id", "currency", "card_number"])
def test_an_identifier_given_as_a_number_is_refused(api, member, field):
    response = api.post(URL, body(member, **{field: 1234567890123}), format="json")
    assert_problem(response, 400, "invalid", field=field)
    assert_nothing_written()


def test_an_enrolment_with_a_number_for_a_name_is_refused(api):
    response = api.post(
        "/api/v1/members/", {"email": "x@example.fr", "first_name": 12}, format="json"
    )
    assert_problem(response, 400, "invalid", field="first_name")
    assert not Member.objects.filter(email="x@example.fr").exists()


def test_a_reward_id_beyond_a_bigint_is_refused(api, member):
    response = api.post(
        f"/api/v1/members/{member.card_number}/redemptions/",
        {"reward_id": 2**70},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert_problem(response, 400, "invalid", field="reward_id")


def test_a_well_formed_amount_is_recorded_to_the_cent(api, member):
    response = api.post(URL, body(member, amount="0042.5"), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "42.50"


# Language ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
def test_title_and_detail_follow_the_requests_language(api, member, language):
    """A domain error whose detail is built at the time of the error, and a validation error:
    both texts are those of the language asked for."""
    api.defaults["HTTP_ACCEPT_LANGUAGE"] = language
    future = (timezone.now() + timedelta(days=2)).isoformat()
    wrong_currency = api.post(URL, body(member, currency="USD"), format="json").json()
    future_date = api.post(URL, body(member, occurred_at=future), format="json").json()
    invalid = api.post(URL, body(member, amount="1e3"), format="json").json()

    with override(language):
        assert wrong_currency["title"] == gettext("The currency is not the program's currency.")
        assert wrong_currency["detail"] == gettext("This program's currency is %(currency)s.") % {
            "currency": "EUR"
        }
        assert future_date["detail"] == gettext("The purchase date is in the future.")
        assert invalid["title"] == gettext("The request is invalid.")
    if language == "fr":
        assert wrong_currency["detail"] == "La devise de ce programme est EUR."
        assert future_date["detail"] == "La date de l'achat est dans le futur."
        assert "chiffres" in invalid["detail"].lower()


def test_an_unknown_path_answers_in_the_requests_language(api):
    fr = api.get("/api/v1/nowhere/", HTTP_ACCEPT_LANGUAGE="fr").json()
    en = api.get("/api/v1/nowhere/", HTTP_ACCEPT_LANGUAGE="en").json()
    assert en["title"] == "Not found."
    assert fr["title"] != en["title"]


# Keys and parameters the API does not take --------------------------------------------------------


def test_a_misspelt_key_is_refused_not_ignored(api, member):
    sent = body()
    sent["card_numbr"] = member.card_number
    response = api.post(URL, sent, format="json")
    problem = assert_problem(response, 400, "invalid", field="card_numbr")
    assert problem["errors"][0]["code"] == "unknown_field"
    assert_nothing_written()


def test_an_unknown_key_in_a_line_is_refused(api, member):
    lines = [{"sku": "A", "quantity": "1", "unit_price": "42.50", "colour": "red"}]
    response = api.post(URL, body(member, lines=lines), format="json")
    assert_problem(response, 400, "invalid", field="lines.0.colour")
    assert_nothing_written()


def test_a_query_parameter_given_twice_is_refused(api, member):
    card = member.card_number
    response = api.get(f"/api/v1/members/lookup/?card_number={card}&card_number={card}")
    assert_problem(response, 400, "invalid", field="card_number")


@pytest.mark.parametrize(
    "params",
    [
        {"phone": "null"},
        {"phone": "-"},
        {"phone": ""},
        {"card_number": "- -"},
        {"card_number": " "},
        {"email": "null"},
    ],
)
def test_a_lookup_by_a_value_that_cannot_match_finds_no_member(api, program, params):
    from tests.factories import enrol

    enrol(program, email="no-phone@example.fr")  # no phone, as most members
    response = api.get("/api/v1/members/lookup/", params)
    field = next(iter(params))
    assert_problem(response, 400, "invalid", field=field)


def test_a_blank_lookup_parameter_beside_another_is_refused(api, member):
    response = api.get("/api/v1/members/lookup/", {"phone": "", "card_number": member.card_number})
    assert_problem(response, 400, "invalid")
