"""The member portal's pages. Thin: forms validate, services act, selectors read.

Every page of a signed-in member is built from `request.member`, the member of the account in
the session, never from an id in the URL: another member's voucher or data is a 404.
"""

import functools
import re
import secrets
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import formats, timezone, translation
from django.utils.dates import WEEKDAYS
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from loyalty.errors import DomainError, NotFound
from loyalty.forms import add_domain_error
from loyalty.models import Campaign, Program
from loyalty.selectors import program_tiers
from members.campaigns import member_campaigns
from members.cards import format_card_number
from members.models import Member, PointsEntry
from members.privacy import set_marketing_consent, update_profile
from members.selectors import member_progress
from rewards import services as reward_services
from rewards.models import Redemption, Reward
from rewards.qr import qr_svg

from . import forms, services, throttle
from .models import MemberAccount

HISTORY_PAGE_SIZE = 20
LATEST_ACTIVITY = 5
HISTORY_KINDS = {
    "purchases": [PointsEntry.Kind.EARN, PointsEntry.Kind.RELEASE],
    "returns": [PointsEntry.Kind.RETURN],
    "bonuses": [PointsEntry.Kind.BONUS, PointsEntry.Kind.ADJUST],
    "redemptions": [PointsEntry.Kind.REDEEM, PointsEntry.Kind.REFUND],
    "expiries": [PointsEntry.Kind.EXPIRE],
}


def _program(slug: str) -> Program:
    return get_object_or_404(Program, slug=slug, status=Program.Status.ACTIVE)


def _account(request, program: Program) -> MemberAccount | None:
    """The signed-in member's account on this program, or None."""
    if not request.user.is_authenticated:
        return None
    account = getattr(request, "_portal_account", None)
    if account is None:
        account = (
            MemberAccount.objects.select_related("member__program", "member__tier", "user")
            .filter(user=request.user)
            .first()
        )
        request._portal_account = account
    if (
        account is None
        or account.member.program_id != program.pk
        or account.member.status != Member.Status.ACTIVE
        or not account.is_verified
    ):
        return None
    return account


def member_page(view):
    """The view needs a signed-in, verified, active member of the program in the URL."""

    @functools.wraps(view)
    @never_cache
    def wrapper(request, program, *args, **kwargs):
        program_row = _program(program)
        account = _account(request, program_row)
        if account is None:
            login_url = reverse("portal:login", kwargs={"program": program_row.slug})
            return redirect(f"{login_url}?next={request.path}")
        request.program = program_row
        request.account = account
        request.member = account.member
        return view(request, *args, **kwargs)

    return wrapper


def _render(request, template: str, context: dict, status: int = 200):
    return render(
        request,
        f"portal/{template}",
        {"program": request.program, "member": getattr(request, "member", None), **context},
        status=status,
    )


def _public(view):
    """A page of the program's portal for visitors (enrol, log in, reset...)."""

    @functools.wraps(view)
    @never_cache
    def wrapper(request, program, *args, **kwargs):
        request.program = _program(program)
        return view(request, *args, **kwargs)

    return wrapper


def _link(request) -> services.Link:
    return services.Link(request)


def _set_language(response, language: str):
    if language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            secure=settings.LANGUAGE_COOKIE_SECURE,
            httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        )
    return response


def _too_many(request, template: str, context: dict):
    context["too_many"] = True
    return _render(request, template, context, status=429)


# Choosing a program ---------------------------------------------------------------------------


@never_cache
def programs(request):
    rows = list(Program.objects.filter(status=Program.Status.ACTIVE).order_by("name"))
    if len(rows) == 1:
        return redirect("portal:home", program=rows[0].slug)
    return render(request, "portal/programs.html", {"programs": rows})


# Enrolment, verification, claim ---------------------------------------------------------------


@sensitive_post_parameters("password")
@_public
def enrol(request):
    program = request.program
    form = forms.EnrolForm(request.POST or None, program=program)
    if request.method == "POST":
        address = throttle.client_address(request)
        if throttle.exceeded("email-address", address):
            return _too_many(request, "enrol.html", {"form": form})
        if form.is_valid():
            data = form.cleaned_data
            # Joining sends an email to the address typed: counted like a reset request, so
            # nobody can flood a member's inbox by joining with their address.
            if not throttle.allow_email(request, data["email"]):
                return _too_many(request, "enrol.html", {"form": form})
            try:
                services.enrol_online(
                    link=_link(request),
                    program=program,
                    password=data["password"],
                    email=data["email"],
                    phone=data["phone"],
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                    birth_date=data["birth_date"],
                    preferred_language=data["preferred_language"],
                    marketing_consent=data["marketing_consent"],
                    referral_code=data["referral_code"],
                )
            except DomainError as exc:
                add_domain_error(form, exc)
            else:
                request.session["portal_sent_to"] = data["email"]
                response = redirect("portal:enrol-done", program=program.slug)
                return _set_language(response, data["preferred_language"])
    return _render(request, "enrol.html", {"form": form})


@_public
def enrol_done(request):
    return _render(request, "enrol_done.html", {"email": request.session.get("portal_sent_to")})


@_public
def verify_email(request, token):
    account = services.verify_email(token=token)
    if account is None or account.member.program_id != request.program.pk:
        return _render(request, "verify_failed.html", {}, status=400)
    if account.user.has_usable_password() and account.user.is_active:
        login(request, account.user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, _("Your email address is confirmed. Welcome!"))
    response = redirect("portal:home", program=request.program.slug)
    return _set_language(response, account.member.preferred_language)


@_public
def resend_verification(request):
    form = forms.EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if not throttle.allow_email(request, email):
            return _too_many(request, "resend.html", {"form": form})
        account = (
            MemberAccount.objects.select_related("member__program", "user")
            .filter(member__program=request.program, member__email=email.lower())
            .exclude(member__status=Member.Status.CLOSED)
            .first()
        )
        if account is not None and not account.is_verified:
            if account.user.has_usable_password():
                services.send_verification(link=_link(request), account=account)
            else:
                services.send_password_link(
                    link=_link(request), account=account, template="portal_claim"
                )
        request.session["portal_sent_to"] = email
        return redirect("portal:enrol-done", program=request.program.slug)
    return _render(request, "resend.html", {"form": form})


@_public
def claim(request):
    form = forms.ClaimForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if not throttle.allow_email(request, email):
            return _too_many(request, "claim.html", {"form": form})
        services.claim_card(
            link=_link(request),
            program=request.program,
            card_number=form.cleaned_data["card_number"],
            email=email,
        )
        request.session["portal_sent_to"] = email
        return redirect("portal:enrol-done", program=request.program.slug)
    return _render(request, "claim.html", {"form": form})


# Signing in and out ---------------------------------------------------------------------------


@sensitive_post_parameters("password")
@_public
def login_view(request):
    program = request.program
    form = forms.LoginForm(request.POST or None)
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ) or not next_url.startswith(f"/portal/{program.slug}/"):
        next_url = reverse("portal:home", kwargs={"program": program.slug})
    context = {"form": form, "next": next_url}
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        account_key = f"{program.pk}:{email}"
        address = throttle.client_address(request)
        # Counted before the password is checked: of many attempts at once, at most the
        # limit are checked. A wrong password stays counted; the right one is given back.
        if not throttle.attempt(("login-account", account_key), ("login-address", address)):
            return _too_many(request, "login.html", context)
        account = services.authenticate_member(
            program=program, email=email, password=form.cleaned_data["password"]
        )
        if account is None or account.member.status != Member.Status.ACTIVE:
            form.add_error(None, _("The email or the password is not right."))
        elif not account.is_verified:
            throttle.give_back("login-account", account_key)
            throttle.give_back("login-address", address)
            form.add_error(
                None,
                _("Please confirm your email address first: follow the link we sent you."),
            )
            context["unverified"] = True
        else:
            throttle.reset("login-account", account_key)
            throttle.give_back("login-address", address)
            login(request, account.user, backend="django.contrib.auth.backends.ModelBackend")
            return _set_language(redirect(next_url), account.member.preferred_language)
    return _render(request, "login.html", context)


@require_POST
def logout_view(request, program):
    logout(request)
    return redirect("portal:login", program=program)


@_public
def password_reset(request):
    form = forms.EmailForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        if not throttle.allow_email(request, email):
            return _too_many(request, "password_reset.html", {"form": form})
        services.request_password_reset(link=_link(request), program=request.program, email=email)
        return redirect("portal:password-reset-done", program=request.program.slug)
    return _render(request, "password_reset.html", {"form": form})


@_public
def password_reset_done(request):
    return _render(request, "password_reset_done.html", {})


class PasswordResetConfirm(auth_views.PasswordResetConfirmView):
    """Django's view (the token leaves the URL before the form is shown), limited to the
    accounts of this program; following the link also proves the email address."""

    template_name = "portal/password_set.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"

    def dispatch(self, request, *args, **kwargs):
        self.program = _program(kwargs["program"])
        request.program = self.program
        return super().dispatch(request, *args, **kwargs)

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        if user is None:
            return None
        account = (
            MemberAccount.objects.select_related("member")
            .filter(user=user, member__program=self.program)
            .exclude(member__status=Member.Status.CLOSED)
            .first()
        )
        return user if account is not None else None

    def form_valid(self, form):
        response = super().form_valid(form)
        account = MemberAccount.objects.select_related("member").get(user=form.user)
        services.mark_verified(account=account)
        messages.success(self.request, _("Your password is set. Welcome!"))
        return _set_language(response, account.member.preferred_language)

    def get_success_url(self):
        return reverse("portal:home", kwargs={"program": self.program.slug})

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "program": self.program}


# The member's pages ---------------------------------------------------------------------------


def _percent(value, total) -> int:
    """How far along the progress bar is, in whole percent."""
    value, total = Decimal(value), Decimal(total)
    if total <= 0:
        return 100
    return max(0, min(100, int(value * 100 / total)))


VOUCHER_REASON = re.compile(r"^voucher (?P<code>[A-Z0-9-]+)(?P<rest> expired| cancelled.*)?$")


def describe(entry: PointsEntry, program: Program) -> str:
    """What a ledger row means for the member, in their language (the row's own reason is
    written for staff)."""
    if entry.purchase_id:
        return _("Purchase of %(amount)s %(currency)s") % {
            "amount": formats.number_format(entry.purchase.total_amount, 2),
            "currency": entry.purchase.currency,
        }
    if entry.kind == PointsEntry.Kind.EXPIRE:
        if entry.reason == "inactivity":
            return _("No purchase for %(months)s months") % {"months": program.expiry_months}
        return _("Points earned more than %(months)s months ago") % {
            "months": program.expiry_months
        }
    match = VOUCHER_REASON.match(entry.reason)
    if match:
        code, rest = match["code"], match["rest"] or ""
        if rest.startswith(" expired"):
            return _("Voucher %(code)s expired unused") % {"code": code}
        if rest.startswith(" cancelled"):
            return _("Voucher %(code)s cancelled") % {"code": code}
        return _("Voucher %(code)s") % {"code": code}
    return entry.reason


def _described(entries, program) -> list:
    entries = list(entries)
    for entry in entries:
        entry.detail = describe(entry, program)
    return entries


def _offers(member: Member) -> list[dict]:
    """The campaigns running now that the member qualifies for (tier, enrolment, segment, not
    held out), with what the purchase itself must meet (shown, not checked here)."""
    live = member_campaigns(member)
    if not live:
        return []
    descriptions = dict(
        Campaign.objects.filter(pk__in=[c.id for c in live]).values_list("pk", "description")
    )
    weekday_names = dict(WEEKDAYS)
    return [
        {
            "campaign": c,
            "description": descriptions.get(c.id, ""),
            "weekdays": [weekday_names[d] for d in sorted(c.weekdays)],
            "categories": sorted(c.target_categories | c.basket_categories),
        }
        for c in sorted(live, key=lambda c: (-c.priority, c.id))
    ]


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


@member_page
def home(request):
    member = request.member
    progress = member_progress(member)
    # The selector answers in JSON-ready strings; the page shows numbers and dates in the
    # visitor's language.
    next_tier, keep = progress["next_tier"], progress["keep"]
    if next_tier:
        progress["percent"] = _percent(progress["qualifying_value"], next_tier["threshold"])
        next_tier["missing"] = Decimal(next_tier["missing"])
        next_tier["by"] = _day(next_tier["by"])
    if keep:
        keep["missing"] = Decimal(keep["missing"])
        keep["done"] = keep["missing"] == 0
        keep["review_on"] = _day(keep["review_on"])
        keep["manual_until"] = _day(keep["manual_until"])
    for row in progress["expiring"]:
        row["date"] = _day(row["date"])
    latest = _described(
        PointsEntry.objects.filter(member=member)
        .select_related("store", "purchase")
        .order_by("-effective_at", "-pk")[:LATEST_ACTIVITY],
        request.program,
    )
    return _render(
        request,
        "home.html",
        {
            "progress": progress,
            "latest": latest,
            "tiers": program_tiers(request.program),
            "offers": _offers(member),
        },
    )


@member_page
def history(request):
    member = request.member
    form = forms.HistoryFilterForm(request.GET or None)
    rows = PointsEntry.objects.filter(member=member).select_related("store", "purchase")
    if form.is_valid():
        data = form.cleaned_data
        tz = request.program.tzinfo
        if data.get("kind"):
            rows = rows.filter(kind__in=HISTORY_KINDS[data["kind"]])
        if data.get("start"):
            rows = rows.filter(effective_at__gte=datetime.combine(data["start"], time(), tz))
        if data.get("end"):
            end = datetime.combine(data["end"] + timedelta(days=1), time(), tz)
            rows = rows.filter(effective_at__lt=end)
    page = Paginator(rows.order_by("-effective_at", "-pk"), HISTORY_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    page.object_list = _described(page.object_list, request.program)
    query = request.GET.copy()
    query.pop("page", None)
    return _render(
        request, "history.html", {"form": form, "page": page, "query": query.urlencode()}
    )


@member_page
def card(request):
    member = request.member
    return _render(
        request,
        "card.html",
        {
            "card_number": format_card_number(member.card_number),
            "qr": qr_svg(
                member.card_number,
                title=_("Card %(number)s") % {"number": format_card_number(member.card_number)},
            ),
        },
    )


def _catalogue(member: Member):
    """The rewards of the program open now, each with whether the member can take it and, if
    not, why (locked by tier, not enough points, out of stock)."""
    now = timezone.now()
    rewards = list(
        Reward.objects.filter(program_id=member.program_id, is_active=True)
        .prefetch_related("tiers")
        .order_by("display_order", "points_cost", "pk")
    )
    rows = []
    for reward in rewards:
        tier_ids = {t.pk for t in reward.tiers.all()}
        problem = reward_services.availability_error(reward, member, now, tier_ids=tier_ids)
        if problem is not None and problem.code != "tier_not_allowed":
            continue  # not open yet or any more: not in the catalogue
        locked_by = sorted(reward.tiers.all(), key=lambda t: t.rank) if problem else []
        rows.append(
            {
                "reward": reward,
                "locked_by": locked_by,
                "out_of_stock": reward.stock is not None and reward.stock <= 0,
                "missing": max(0, reward.points_cost - member.points_available),
            }
        )
    return rows


@member_page
def rewards(request):
    return _render(request, "rewards.html", {"rows": _catalogue(request.member)})


@member_page
def reward_detail(request, pk):
    member = request.member
    reward = get_object_or_404(
        Reward.objects.prefetch_related("tiers"), pk=pk, program_id=member.program_id
    )
    row = next((r for r in _catalogue(member) if r["reward"].pk == reward.pk), None)
    if row is None:
        raise Http404
    error = None
    if request.method == "POST":
        token = request.POST.get("token", "")
        if len(token) < 16 or len(token) > 64:
            error = _("This form has expired: please confirm again.")
        else:
            try:
                redemption = services.redeem_once(member=member, reward=reward, token=token)
            except NotFound:
                raise Http404 from None
            except DomainError as exc:
                error = exc.detail
            else:
                messages.success(request, _("Here is your voucher."))
                return redirect(
                    "portal:voucher", program=request.program.slug, code=redemption.code
                )
        row = next((r for r in _catalogue(member) if r["reward"].pk == reward.pk), row)
    return _render(
        request,
        "reward_detail.html",
        {
            "row": row,
            "reward": reward,
            "token": secrets.token_urlsafe(24),
            "error": error,
            "balance_after": member.points_available - reward.points_cost,
        },
        status=422 if error else 200,
    )


@member_page
def vouchers(request):
    rows = (
        Redemption.objects.filter(member=request.member)
        .select_related("reward")
        .order_by("-issued_at", "-pk")
    )
    page = Paginator(rows, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return _render(request, "vouchers.html", {"page": page, "now": timezone.now()})


@member_page
def voucher(request, code):
    redemption = get_object_or_404(
        Redemption.objects.select_related("reward", "used_store"),
        member=request.member,
        code=reward_services.normalize_code(code),
    )
    formatted = reward_services.format_code(redemption.code)
    return _render(
        request,
        "voucher.html",
        {
            "redemption": redemption,
            "code": formatted,
            "qr": qr_svg(redemption.code, title=_("Voucher %(code)s") % {"code": formatted}),
            "is_open": redemption.status == Redemption.Status.ISSUED,
        },
    )


# Profile and privacy --------------------------------------------------------------------------


@member_page
def profile(request):
    member = request.member
    account = request.account
    profile_form = forms.ProfileForm(instance=member, prefix="profile")
    email_form = forms.EmailForm(prefix="email", initial={"email": member.email})
    consent_form = forms.ConsentForm(
        prefix="consent", initial={"marketing_consent": member.marketing_consent}
    )
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "profile":
            profile_form = forms.ProfileForm(
                request.POST, instance=Member.objects.get(pk=member.pk), prefix="profile"
            )
            if profile_form.is_valid():
                changes = {name: profile_form.cleaned_data[name] for name in profile_form.fields}
                try:
                    update_profile(member, **changes)
                except DomainError as exc:
                    add_domain_error(profile_form, exc)
                else:
                    messages.success(request, _("Your details are saved."))
                    response = redirect("portal:profile", program=request.program.slug)
                    return _set_language(response, member.preferred_language)
        elif action == "email":
            email_form = forms.EmailForm(request.POST, prefix="email")
            if email_form.is_valid():
                try:
                    services.request_email_change(
                        link=_link(request), account=account, email=email_form.cleaned_data["email"]
                    )
                except DomainError as exc:
                    add_domain_error(email_form, exc)
                else:
                    messages.success(
                        request,
                        _("We sent a link to %(email)s: your address changes once you follow it.")
                        % {"email": account.pending_email},
                    )
                    return redirect("portal:profile", program=request.program.slug)
        elif action == "consent":
            consent_form = forms.ConsentForm(request.POST, prefix="consent")
            if consent_form.is_valid():
                set_marketing_consent(member, consent_form.cleaned_data["marketing_consent"])
                messages.success(request, _("Your choices are saved."))
                return redirect("portal:profile", program=request.program.slug)
        status = 422
    return _render(
        request,
        "profile.html",
        {
            "profile_form": profile_form,
            "email_form": email_form,
            "consent_form": consent_form,
            "account": account,
        },
        status=status,
    )


@member_page
def data_export(request):
    member = request.member
    stamp = timezone.localdate().isoformat()
    if request.resolver_match.url_name == "data-json":
        response = HttpResponse(services.data_json(member), content_type="application/json")
        name = f"my-data-{stamp}.json"
    else:
        response = HttpResponse(services.data_zip(member), content_type="application/zip")
        name = f"my-data-{stamp}-csv.zip"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@sensitive_post_parameters("password")
@member_page
def close_account(request):
    form = forms.CloseAccountForm(request.POST or None, user=request.account.user)
    if request.method == "POST" and form.is_valid():
        services.close_account(account=request.account)
        logout(request)
        return redirect("portal:closed", program=request.program.slug)
    return _render(request, "close.html", {"form": form}, status=422 if form.errors else 200)


@_public
def closed(request):
    return _render(request, "closed.html", {})


def language(request, program):
    """Switch the language; a signed-in member's choice is also kept for their emails."""
    program_row = _program(program)
    code = request.POST.get("language", "")
    next_url = request.POST.get("next", "")
    if not next_url.startswith(f"/portal/{program_row.slug}/"):
        next_url = reverse("portal:home", kwargs={"program": program_row.slug})
    if request.method != "POST" or code not in dict(settings.LANGUAGES):
        return redirect(next_url)
    account = _account(request, program_row)
    if account is not None and account.member.preferred_language != code:
        update_profile(account.member, preferred_language=code)
    translation.activate(code)
    return _set_language(redirect(next_url), code)
