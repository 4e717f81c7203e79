"""The POS journey driven by a client that openapi-python-client generates from our OpenAPI
schema, against a live server: every success parses into its model, every error into the
`Problem` model with its code (an error the schema does not document raises UnexpectedStatus),
and every answer, success or error, conforms to the schema (schemathesis validates it: status,
content type, shape, nullable keys, formats).

The schema is written by `manage.py spectacular` and the client generated once per session."""

import contextlib
import importlib
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
import schemathesis
from django.core.management import call_command

from members.cards import luhn_check_digit
from members.ledger import find_mismatches
from tests.browser import live_server
from tests.factories import ProgramFactory, StoreFactory, TierFactory, make_api_key, make_reward

PACKAGE = "loyalty_pos_client"
GENERATOR = shutil.which("openapi-python-client", path=str(sys.prefix + "/bin")) or shutil.which(
    "openapi-python-client"
)


def _generator_runs() -> str | None:
    """Why openapi-python-client cannot run here, or None when it can."""
    if GENERATOR is None:
        return "openapi-python-client is not installed (pip install -r requirements/dev.txt)"
    try:
        subprocess.run([GENERATOR, "--version"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"openapi-python-client cannot run: {exc}"
    return None


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """The schema (`.schema`) and the client package generated from it, imported
    (`.package`)."""
    reason = _generator_runs()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("generated-client")
    schema = root / "schema.json"
    call_command(
        "spectacular",
        "--file",
        str(schema),
        "--format",
        "openapi-json",
        "--lang",
        "en",
        "--validate",
        "--fail-on-warn",
    )
    config = root / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run on the generated code
    generated = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(root / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(root))
    try:
        yield SimpleNamespace(
            package=importlib.import_module(PACKAGE), schema=json.loads(schema.read_text())
        )
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(package, name: str):
    return importlib.import_module(f"{package.__name__}.{name}")


@pytest.mark.django_db(transaction=True)
def test_generated_client_drives_the_pos_journey_and_parses_every_error(generated):
    api = lambda name: module(generated.package, f"api.{name}")  # noqa: E731
    models = module(generated.package, "models")
    client_module = module(generated.package, "client")
    problem = models.Problem
    answers = []  # every answer, checked against the schema at the end

    def keep(response):
        response.read()
        answers.append(response)

    program = ProgramFactory(return_window_days=0)  # points available at once, to redeem
    TierFactory(program=program, name="Bronze", rank=0)
    TierFactory(program=program, name="Silver", rank=1, qualify_threshold=Decimal("40"))
    store = StoreFactory(program=program, slug="paris-01")
    reward = make_reward(program, points_cost=30, name_en="Gift")
    key = make_api_key(store)

    def expect_problem(response, status, code):
        """The answer has this status and parsed into the generated Problem model."""
        assert response.status_code == status, response.content
        assert response.headers["Content-Type"].startswith("application/problem+json")
        parsed = response.parsed
        assert isinstance(parsed, problem), parsed
        assert (parsed.status, parsed.code) == (status, code)
        assert parsed.type_ == f"urn:loyalty:problem:{code}"
        return parsed

    # The clients are closed before the server stops: a kept-alive connection would keep the
    # server's thread, and its database connection, open.
    with live_server() as server, contextlib.ExitStack() as clients:
        options = {
            "base_url": server.url,
            "raise_on_unexpected_status": True,
            "httpx_args": {"event_hooks": {"response": [keep]}},
        }
        pos = clients.enter_context(
            client_module.AuthenticatedClient(token=key, prefix="Api-Key", **options)
        )
        anonymous = clients.enter_context(client_module.Client(**options))

        # No API key: 401, parsed.
        response = api("members.lookup_member").sync_detailed(
            client=anonymous, card_number="9123456789016"
        )
        expect_problem(response, 401, "not_authenticated")

        # Enrol, then look the member up by card.
        enrolment = api("members.enrol_member").sync_detailed(
            client=pos,
            body=models.EnrolRequest(email="claire@example.fr", first_name="Claire"),
        )
        assert enrolment.status_code == 201, enrolment.content
        member = enrolment.parsed
        assert isinstance(member, models.MemberSummary)
        assert member.tier == "Bronze"
        card = member.card_number
        found = api("members.lookup_member").sync(client=pos, card_number=card)
        assert isinstance(found, models.MemberLookupResponse)
        assert (found.card_number, found.email) == (card, "claire@example.fr")
        assert found.progress.tier.name == "Bronze"

        # An unknown card: 404.
        unknown = "9" * 12 + luhn_check_digit("9" * 12)  # a valid card, no such member
        response = api("members.lookup_member").sync_detailed(client=pos, card_number=unknown)
        expect_problem(response, 404, "member_not_found")

        # A purchase, then its replay: the same answer.
        purchase_body = models.PurchaseRequest(
            receipt_id="R-1",
            card_number=card,
            amount="42.50",
            currency="EUR",
            occurred_at=datetime.now(UTC) - timedelta(minutes=5),
        )
        first = api("purchases.record_purchase").sync_detailed(client=pos, body=purchase_body)
        assert first.status_code == 201, first.content
        assert isinstance(first.parsed, models.PurchaseResponse)
        assert first.parsed.points_earned == 42
        assert first.parsed.points_available == 42
        assert first.parsed.release_at is None
        assert (first.parsed.tier_upgrade.from_, first.parsed.tier_upgrade.to) == (
            "Bronze",
            "Silver",
        )
        replay = api("purchases.record_purchase").sync_detailed(client=pos, body=purchase_body)
        assert replay.status_code == 200
        assert replay.content == first.content
        assert replay.parsed.to_dict() == first.parsed.to_dict()

        # The same receipt with another amount: 409.
        conflicting = models.PurchaseRequest.from_dict({**purchase_body.to_dict(), "amount": "9"})
        response = api("purchases.record_purchase").sync_detailed(client=pos, body=conflicting)
        assert expect_problem(response, 409, "receipt_conflict").field == "receipt_id"

        # An invalid body: 400 with every field error.
        invalid = models.PurchaseRequest.from_dict(
            {**purchase_body.to_dict(), "receipt_id": "R-2", "card_number": "1234"}
        )
        response = api("purchases.record_purchase").sync_detailed(client=pos, body=invalid)
        parsed = expect_problem(response, 400, "invalid")
        assert [(e.field, e.code) for e in parsed.errors] == [
            ("card_number", "invalid_card_number")
        ]

        # An anonymous purchase: the member's keys are null; a quote writes nothing.
        anonymous_purchase = api("purchases.record_purchase").sync(
            client=pos,
            body=models.PurchaseRequest(
                receipt_id="R-ANON",
                card_number=None,
                amount="5.00",
                currency="EUR",
                occurred_at=datetime.now(UTC),
            ),
        )
        assert (anonymous_purchase.card_number, anonymous_purchase.tier_upgrade) == (None, None)
        quote = api("purchases.quote_purchase").sync(
            client=pos,
            body=models.QuoteRequest(card_number=card, amount="10.00", currency="EUR"),
        )
        assert (quote.points, quote.tier) == (10, "Silver")

        # A business rule: 422.
        foreign = models.PurchaseRequest.from_dict(
            {**purchase_body.to_dict(), "receipt_id": "R-3", "currency": "USD"}
        )
        response = api("purchases.record_purchase").sync_detailed(client=pos, body=foreign)
        expect_problem(response, 422, "wrong_currency")

        # The member's history: one page of the ledger, with the balances.
        history = api("members.member_history").sync(client=pos, card_number=card, page_size=10)
        assert isinstance(history, models.MemberHistoryOut)
        assert (history.count, history.next_, history.previous) == (1, None, None)
        assert [(e.kind, e.points, e.receipt_id) for e in history.results] == [
            (models.LedgerKindEnum.EARN, 42, "R-1")
        ]
        assert (history.points_available, history.points_pending) == (42, 0)
        response = api("members.member_history").sync_detailed(client=pos, card_number=card, page=9)
        expect_problem(response, 404, "not_found")

        # The catalogue as the member sees it.
        catalogue = api("rewards.list_rewards").sync(client=pos, card_number=card)
        assert [(r.id, r.available, r.unavailable_reason) for r in catalogue] == [
            (reward.pk, True, None)
        ]

        # Redeeming without an Idempotency-Key (the generated function requires one, so the
        # request is sent without it by hand): 428, parsed by the generated parser.
        redeem = api("members.redeem_reward")
        request = redeem._get_kwargs(
            card, body=models.RedeemRequest(reward_id=reward.pk), idempotency_key="unused"
        )
        del request["headers"]["Idempotency-Key"]
        response = redeem._build_response(
            client=pos, response=pos.get_httpx_client().request(**request)
        )
        expect_problem(response, 428, "idempotency_key_required")

        # With one: a voucher; the retry with the same key gets the same answer.
        redeemed = redeem.sync_detailed(
            card, client=pos, body=models.RedeemRequest(reward_id=reward.pk), idempotency_key="k1"
        )
        assert redeemed.status_code == 201, redeemed.content
        voucher = redeemed.parsed
        assert isinstance(voucher, models.RedemptionOut)
        assert (voucher.status, voucher.points_available) == (models.VoucherStatusEnum.ISSUED, 12)
        again = redeem.sync_detailed(
            card, client=pos, body=models.RedeemRequest(reward_id=reward.pk), idempotency_key="k1"
        )
        assert (again.status_code, again.content) == (201, redeemed.content)
        # Another redemption: not enough points left.
        response = redeem.sync_detailed(
            card, client=pos, body=models.RedeemRequest(reward_id=reward.pk), idempotency_key="k2"
        )
        expect_problem(response, 422, "not_enough_points")

        # Validate the voucher, use it, and use it again on another receipt.
        checked = api("vouchers.validate_voucher").sync(voucher.code, client=pos)
        assert isinstance(checked, models.VoucherOut)
        assert (checked.valid, checked.used_at) == (True, None)
        used = api("vouchers.use_voucher").sync(
            voucher.code, client=pos, body=models.VoucherUseRequest(receipt_id="R-4")
        )
        assert (used.status, used.used_receipt_id) == (models.VoucherStatusEnum.USED, "R-4")
        assert used.used_at is not None
        response = api("vouchers.use_voucher").sync_detailed(
            voucher.code, client=pos, body=models.VoucherUseRequest(receipt_id="R-5")
        )
        expect_problem(response, 409, "voucher_already_used")
        # The deprecated alias kept for existing tills answers the same.
        replay = api("vouchers.consume_voucher").sync(
            voucher.code, client=pos, body=models.VoucherUseRequest(receipt_id="R-4")
        )
        assert (replay.status, replay.used_receipt_id) == (models.VoucherStatusEnum.USED, "R-4")
        response = api("vouchers.validate_voucher").sync_detailed("AAAA-BBBB-CCCC", client=pos)
        expect_problem(response, 404, "voucher_not_found")

        # A return of part of the purchase.
        returned = api("purchases.record_return").sync_detailed(
            "R-1", client=pos, body=models.ReturnRequest(return_id="RET-1", amount="10.00")
        )
        assert returned.status_code == 201, returned.content
        assert isinstance(returned.parsed, models.ReturnResponse)
        assert (returned.parsed.points_reversed, returned.parsed.points_available) == (10, 2)
        response = api("purchases.record_return").sync_detailed(
            "R-9", client=pos, body=models.ReturnRequest(return_id="RET-2", amount="1.00")
        )
        expect_problem(response, 404, "unknown_receipt")

    assert find_mismatches() == []

    # Every answer conforms to the schema: its status is documented, and its content type,
    # keys, nullable keys and formats are those documented for that status.
    schema = schemathesis.openapi.from_dict(generated.schema)
    assert len(answers) >= 20
    for answer in answers:
        operation = schema.find_operation_by_path(answer.request.method, answer.request.url.path)
        assert operation is not None, answer.request.url
        operation.validate_response(answer)
