"""Staff admin of members, purchases and the ledger: pages load, balances stay read-only,
points move only through the adjustment view, and the ledger cannot be edited."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from members import ledger, services
from members.models import Member, PointsEntry, Purchase, TierChange
from tests.factories import StaffUserFactory


@pytest.fixture
def purchase(store, member):
    services.record_purchase(
        store=store,
        receipt_id="A1",
        amount=Decimal("10.00"),
        currency="EUR",
        occurred_at=timezone.now(),
        card_number=member.card_number,
    )
    return Purchase.objects.get(store=store, receipt_id="A1")


def adjust_url(member):
    return reverse("admin:members_member_adjust", args=[member.pk])


def change_url(member):
    return reverse("admin:members_member_change", args=[member.pk])


def staff_client(client, *perms):
    user = StaffUserFactory(is_superuser=False)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return client, user


# Pages ----------------------------------------------------------------------------------------


def test_member_changelist_and_change_page_load(admin_client, member):
    response = admin_client.get(reverse("admin:members_member_changelist"))
    assert response.status_code == 200
    assert member.card_number in response.text

    response = admin_client.get(change_url(member))
    assert response.status_code == 200
    assert adjust_url(member) in response.text
    ledger_link = reverse("admin:members_pointsentry_changelist")
    assert f"{ledger_link}?member__id__exact={member.pk}" in response.text


def test_member_search(admin_client, member):
    response = admin_client.get(
        reverse("admin:members_member_changelist"), {"q": member.card_number}
    )
    assert response.status_code == 200
    assert member.card_number in response.text


def test_members_cannot_be_added_or_deleted(admin_client, member):
    assert admin_client.get(reverse("admin:members_member_add")).status_code == 403
    delete = reverse("admin:members_member_delete", args=[member.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Member.objects.filter(pk=member.pk).exists()


def test_ledger_pages_load(admin_client, member, purchase):
    entry = PointsEntry.objects.get(member=member)
    changelist = reverse("admin:members_pointsentry_changelist")
    response = admin_client.get(changelist)
    assert response.status_code == 200
    response = admin_client.get(changelist, {"member__id__exact": member.pk})
    assert response.status_code == 200
    assert member.card_number in response.text
    response = admin_client.get(changelist, {"q": "A1"})
    assert response.status_code == 200
    response = admin_client.get(reverse("admin:members_pointsentry_change", args=[entry.pk]))
    assert response.status_code == 200


def test_purchase_pages_load(admin_client, purchase):
    response = admin_client.get(reverse("admin:members_purchase_changelist"))
    assert response.status_code == 200
    assert "A1" in response.text
    response = admin_client.get(reverse("admin:members_purchase_change", args=[purchase.pk]))
    assert response.status_code == 200
    assert 'name="_save"' not in response.text
    assert admin_client.get(reverse("admin:members_purchase_add")).status_code == 403


# Balances are read-only -----------------------------------------------------------------------


def _change_form_data(response):
    """The member change form's initial data, as the browser would post it."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            value = ""
        elif isinstance(value, bool):
            if not value:
                continue
            value = "on"
        elif hasattr(value, "pk"):
            value = value.pk
        data[name] = value
    for inline in response.context["inline_admin_formsets"]:  # the read-only tier history
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management[name].value()
    return data


def test_member_change_cannot_touch_balances(admin_client, member):
    response = admin_client.get(change_url(member))
    form = response.context["adminform"].form
    for name in ("points_available", "points_pending", "points_lifetime", "card_number"):
        assert name not in form.fields
        assert name in response.context["adminform"].readonly_fields

    data = _change_form_data(response)
    data.update(
        last_name="Martin",
        points_available="999999",
        points_pending="5",
        points_lifetime="999999",
        card_number="0000000000000",
    )
    response = admin_client.post(change_url(member), data)
    assert response.status_code == 302, response.context["adminform"].form.errors

    refreshed = Member.objects.get(pk=member.pk)
    assert refreshed.last_name == "Martin"
    assert refreshed.points_available == 0
    assert refreshed.points_pending == 0
    assert refreshed.points_lifetime == 0
    assert refreshed.card_number == member.card_number
    assert ledger.find_mismatches() == []


# Adjustment view -------------------------------------------------------------------------------


def test_adjust_get_shows_form_and_balances(admin_client, member):
    response = admin_client.get(adjust_url(member))
    assert response.status_code == 200
    assert 'name="points"' in response.text
    assert 'name="reason"' in response.text
    assert "csrfmiddlewaretoken" in response.text
    assert member.card_number in response.text


def test_adjust_post_credits_points(client, member):
    user = StaffUserFactory()
    client.force_login(user)
    response = client.post(adjust_url(member), {"points": "50", "reason": "Goodwill"})
    assert response.status_code == 302
    assert response["Location"] == change_url(member)

    member.refresh_from_db()
    assert member.points_available == 50
    entry = PointsEntry.objects.get(member=member)
    assert entry.kind == PointsEntry.Kind.ADJUST
    assert entry.bucket == PointsEntry.Bucket.AVAILABLE
    assert entry.points == 50
    assert entry.staff_user == user
    assert entry.reason == "Goodwill"
    assert ledger.find_mismatches() == []

    response = client.get(response["Location"])
    assert "+50" in response.text


def test_adjust_post_debits_points(admin_client, admin_user, member):
    services.adjust_points(member=member, points=80, reason="Opening", staff_user=admin_user)
    response = admin_client.post(adjust_url(member), {"points": "-30", "reason": "Fix"})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.points_available == 50
    assert ledger.find_mismatches() == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"points": "50", "reason": ""}, "reason"),
        ({"points": "50", "reason": "   "}, "reason"),
        ({"points": "0", "reason": "Goodwill"}, "points"),
        ({"points": "", "reason": "Goodwill"}, "points"),
        ({"points": "abc", "reason": "Goodwill"}, "points"),
        ({"points": "50", "reason": "x" * 201}, "reason"),
    ],
)
def test_adjust_invalid_post_writes_nothing(admin_client, member, data, field):
    response = admin_client.post(adjust_url(member), data)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert "errornote" in response.text
    assert not PointsEntry.objects.exists()
    member.refresh_from_db()
    assert member.points_available == 0
    assert ledger.find_mismatches() == []


def test_adjust_domain_error_becomes_form_error(admin_client, member, monkeypatch):
    from members import errors

    def refuse(**kwargs):
        raise errors.InvalidAdjustment()

    monkeypatch.setattr(services, "adjust_points", refuse)
    response = admin_client.post(adjust_url(member), {"points": "5", "reason": "Goodwill"})
    assert response.status_code == 200
    assert response.context["form"].errors["points"] == [str(errors.InvalidAdjustment.title)]
    assert not PointsEntry.objects.exists()


def test_adjust_refused_without_change_permission(client, member):
    client, _user = staff_client(client, "view_member")
    assert client.get(adjust_url(member)).status_code == 403
    response = client.post(adjust_url(member), {"points": "50", "reason": "Goodwill"})
    assert response.status_code == 403
    assert not PointsEntry.objects.exists()
    member.refresh_from_db()
    assert member.points_available == 0


def test_adjust_refused_for_staff_without_permissions(client, member):
    client, _user = staff_client(client)
    response = client.post(adjust_url(member), {"points": "50", "reason": "Goodwill"})
    assert response.status_code == 403
    assert not PointsEntry.objects.exists()


def test_adjust_allowed_with_change_permission(client, member):
    client, user = staff_client(client, "change_member")
    response = client.post(adjust_url(member), {"points": "7", "reason": "Goodwill"})
    assert response.status_code == 302
    assert PointsEntry.objects.get(member=member).staff_user == user
    assert ledger.find_mismatches() == []


def test_adjust_needs_login(client, member):
    response = client.post(adjust_url(member), {"points": "50", "reason": "Goodwill"})
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
    assert not PointsEntry.objects.exists()


def test_adjust_unknown_member_redirects(admin_client, db):
    response = admin_client.get(reverse("admin:members_member_adjust", args=[999999]))
    assert response.status_code == 302


# The ledger is read-only -----------------------------------------------------------------------


def test_ledger_cannot_be_added_changed_or_deleted(admin_client, member, purchase):
    entry = PointsEntry.objects.get(member=member)
    assert admin_client.get(reverse("admin:members_pointsentry_add")).status_code == 403

    change = reverse("admin:members_pointsentry_change", args=[entry.pk])
    response = admin_client.get(change)
    assert response.status_code == 200
    assert 'name="_save"' not in response.text
    response = admin_client.post(change, {"points": "9999", "reason": "tamper"})
    assert response.status_code == 403

    delete = reverse("admin:members_pointsentry_delete", args=[entry.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403

    entry.refresh_from_db()
    assert entry.points == purchase.points_earned
    assert ledger.find_mismatches() == []


def test_ledger_visible_with_view_permission_only(client, member, purchase):
    client, _user = staff_client(client, "view_pointsentry")
    assert client.get(reverse("admin:members_pointsentry_changelist")).status_code == 200
    entry = PointsEntry.objects.get(member=member)
    change = reverse("admin:members_pointsentry_change", args=[entry.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, {"points": "1"}).status_code == 403


def test_member_change_form_cannot_set_the_tier(admin_client, member):
    from tests.factories import TierFactory

    gold = TierFactory(program=member.program, name="Gold", rank=5)
    response = admin_client.get(change_url(member))
    data = _change_form_data(response)
    data["tier"] = gold.pk
    assert admin_client.post(change_url(member), data).status_code == 302
    member.refresh_from_db()
    assert member.tier_id != gold.pk
    assert not TierChange.objects.filter(member=member).exists()


def set_tier_url(member):
    return reverse("admin:members_member_set_tier", args=[member.pk])


def test_set_tier_records_the_change_with_staff_user_and_reason(admin_client, admin_user, member):
    from tests.factories import TierFactory

    gold = TierFactory(program=member.program, name="Gold", rank=5)
    page = admin_client.get(set_tier_url(member))
    assert page.status_code == 200
    assert "Gold" in page.text
    until = (timezone.localdate() + timedelta(days=90)).isoformat()
    response = admin_client.post(
        set_tier_url(member), {"tier": gold.pk, "until": until, "reason": "Press partner"}
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.tier_id == gold.pk
    assert member.tier_manual_until.isoformat() == until
    change = TierChange.objects.get(member=member)
    assert change.reason == TierChange.Reason.MANUAL
    assert change.to_tier_id == gold.pk
    assert change.staff_user_id == admin_user.pk
    assert change.note == "Press partner"
    page = admin_client.get(change_url(member))
    assert "Press partner" in page.text  # the tier history inline


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"until": "+90", "reason": ""}, "reason"),
        ({"until": "-1", "reason": "VIP"}, "until"),
        ({"until": "not a date", "reason": "VIP"}, "until"),
        ({"until": "+90", "reason": "VIP", "tier": "other"}, "tier"),
    ],
)
def test_set_tier_invalid_post_writes_nothing(admin_client, member, data, field):
    from tests.factories import TierFactory

    gold = TierFactory(program=member.program, name="Gold", rank=5)
    other = TierFactory(name="Gold elsewhere")
    post = {"tier": other.pk if data.get("tier") == "other" else gold.pk, "reason": data["reason"]}
    if data["until"].lstrip("+-").isdigit():
        post["until"] = (timezone.localdate() + timedelta(days=int(data["until"]))).isoformat()
    else:
        post["until"] = data["until"]
    response = admin_client.post(set_tier_url(member), post)
    assert response.status_code == 200
    assert field in response.context["form"].errors
    member.refresh_from_db()
    assert member.tier_id != gold.pk
    assert not TierChange.objects.exists()


def test_set_tier_refused_without_change_permission(client, member):
    client, _user = staff_client(client, "view_member")
    assert client.get(set_tier_url(member)).status_code == 403


def test_tier_history_and_notifications_are_read_only(admin_client, member):
    for name in ("tierchange", "membernotification"):
        assert admin_client.get(reverse(f"admin:members_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:members_{name}_add")).status_code == 403


def test_member_change_records_consent_time(admin_client, member):
    assert not member.marketing_consent
    data = _change_form_data(admin_client.get(change_url(member)))
    data["marketing_consent"] = "on"
    assert admin_client.post(change_url(member), data).status_code == 302
    member.refresh_from_db()
    assert member.marketing_consent
    assert member.marketing_consent_at is not None


def test_member_change_keeps_the_points_moved_while_the_form_was_open(member):
    stale = Member.objects.get(pk=member.pk)
    services.adjust_points(member=member, points=40, reason="goodwill", staff_user=None)
    stale.last_name = "Martin"
    services.update_member_by_staff(member=stale, fields=["last_name"])
    refreshed = Member.objects.get(pk=member.pk)
    assert (refreshed.last_name, refreshed.points_available) == ("Martin", 40)
    assert refreshed.marketing_consent_at is None
    assert ledger.find_mismatches() == []
