"""The demo program: a French retail chain with shops, web and app channels. Idempotent."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction

from loyalty.models import Campaign, EarningRule, Program, ProgramCost, Segment, Store, Tier

DEMO_SLUG = "maison-lumiere"

STORES = [
    ("paris-rivoli", "Paris Rivoli", Store.Channel.SHOP, "Paris"),
    ("lyon-bellecour", "Lyon Bellecour", Store.Channel.SHOP, "Lyon"),
    ("bordeaux-sainte-catherine", "Bordeaux Sainte-Catherine", Store.Channel.SHOP, "Bordeaux"),
    ("lille-centre", "Lille Centre", Store.Channel.SHOP, "Lille"),
    ("web", "maison-lumiere.fr", Store.Channel.WEB, ""),
    ("app", "Application mobile", Store.Channel.APP, ""),
]

TIERS = [
    (
        0,
        "Essentiel",
        Decimal("0"),
        None,
        Decimal("1.00"),
        "Points sur chaque achat\nOffre d'anniversaire",
    ),
    (
        1,
        "Argent",
        Decimal("300"),
        Decimal("250"),
        Decimal("1.25"),
        "Points ×1,25\nLivraison offerte dès 30 €\nVentes privées",
    ),
    (
        2,
        "Or",
        Decimal("800"),
        Decimal("650"),
        Decimal("1.50"),
        "Points ×1,5\nLivraison offerte\nAccès anticipé aux nouveautés\nRetouches gratuites",
    ),
    (
        3,
        "Platine",
        Decimal("2000"),
        Decimal("1700"),
        Decimal("2.00"),
        "Points ×2\nConseiller personnel\nInvitations aux événements\nRetours étendus à 60 jours",
    ),
]

RULES = [
    ("Web : 1,5 point par euro", EarningRule.Kind.RATE, Decimal("1.5"), "web", ""),
    ("Application : 2 points par euro", EarningRule.Kind.RATE, Decimal("2"), "app", ""),
    ("Beauté ×2", EarningRule.Kind.MULTIPLIER, Decimal("2"), "", "beaute"),
    ("Cartes cadeaux exclues", EarningRule.Kind.EXCLUSION, Decimal("0"), "", "cartes-cadeaux"),
    ("Panier minimum 5 €", EarningRule.Kind.MINIMUM_BASKET, Decimal("5"), "", ""),
]

COSTS = [
    (
        ProgramCost.Category.DESIGN_LAUNCH,
        "Étude et conception du programme",
        ProgramCost.Kind.ONE_OFF,
        Decimal("45000"),
        36,
    ),
    (
        ProgramCost.Category.TECHNOLOGY,
        "Mise en place du système",
        ProgramCost.Kind.ONE_OFF,
        Decimal("18000"),
        24,
    ),
    (
        ProgramCost.Category.STAFF,
        "Responsable fidélité (temps partiel)",
        ProgramCost.Kind.RECURRING,
        Decimal("2800"),
        None,
    ),
    (
        ProgramCost.Category.CUSTOMER_SERVICE,
        "Service client membres",
        ProgramCost.Kind.RECURRING,
        Decimal("1200"),
        None,
    ),
    (
        ProgramCost.Category.TECHNOLOGY,
        "Hébergement et maintenance",
        ProgramCost.Kind.RECURRING,
        Decimal("650"),
        None,
    ),
    (
        ProgramCost.Category.DATA_ANALYSIS,
        "Analyse de données",
        ProgramCost.Kind.RECURRING,
        Decimal("900"),
        None,
    ),
    (
        ProgramCost.Category.TRAINING,
        "Formation des vendeurs",
        ProgramCost.Kind.ONE_OFF,
        Decimal("6000"),
        12,
    ),
    (
        ProgramCost.Category.MAINTENANCE_SECURITY,
        "Sécurité des données clients",
        ProgramCost.Kind.RECURRING,
        Decimal("300"),
        None,
    ),
]


def seed_program(*, launch: date) -> Program:
    """Create or bring up to date the demo program, its stores, tiers, rules and costs."""
    with transaction.atomic():
        program, _ = Program.objects.update_or_create(
            slug=DEMO_SLUG,
            defaults={
                "name": "Maison Lumière",
                "currency": "EUR",
                "time_zone": "Europe/Paris",
                "points_name": "points",
                "base_earn_rate": Decimal("1"),
                "return_window_days": 30,
                "backdating_days": 30,
                "expiry_policy": Program.ExpiryPolicy.AFTER_EARNING,
                "expiry_months": 12,
                "tier_metric": Program.TierMetric.SPEND,
                "tier_window": Program.TierWindow.ROLLING,
                "tier_window_months": 12,
                "tier_grace_periods": 1,
                "tier_downgrade_policy": Program.TierDowngrade.ONE_STEP,
                "gross_margin_rate": Decimal("0.42"),
                "point_cost_amount": Decimal("0.01"),
                "status": Program.Status.ACTIVE,
            },
        )
        for slug, name, channel, city in STORES:
            Store.objects.update_or_create(
                program=program,
                slug=slug,
                defaults={"name": name, "channel": channel, "city": city, "is_active": True},
            )
        for rank, name, qualify, retain, multiplier, perks in TIERS:
            Tier.objects.update_or_create(
                program=program,
                rank=rank,
                defaults={
                    "name": name,
                    "qualify_threshold": qualify,
                    "retain_threshold": retain,
                    "earn_multiplier": multiplier,
                    "perks": perks,
                },
            )
        for name, kind, value, channel, category in RULES:
            EarningRule.objects.update_or_create(
                program=program,
                name=name,
                defaults={
                    "kind": kind,
                    "value": value,
                    "channel": channel,
                    "category": category,
                    "is_active": True,
                },
            )
        for category, label, kind, amount, months in COSTS:
            ProgramCost.objects.update_or_create(
                program=program,
                label=label,
                defaults={
                    "category": category,
                    "kind": kind,
                    "cost_amount": amount,
                    "starts_on": launch,
                    "amortisation_months": months,
                },
            )
    return program


# Campaigns and segments -----------------------------------------------------------------------

PAST_CAMPAIGN = "Rentrée : points ×2"

SEGMENTS = [
    (
        "Champions",
        "Nos meilleurs clients : achat récent, fréquent et panier élevé "
        "(scores de récence, fréquence et montant de 4 ou 5).",
        {"min_recency_score": 4, "min_frequency_score": 4, "min_monetary_score": 4},
    ),
    (
        "Inactifs depuis 90 jours",
        "Membres sans achat depuis au moins 90 jours, à réactiver.",
        {"inactive_days": 90},
    ),
]


@dataclass(frozen=True)
class DemoCampaigns:
    """The demo's campaigns by name, its segments, and the past campaign whose history
    demo/campaign_history.py makes real (awards, bonuses, a measurable uplift)."""

    past: Campaign
    campaigns: dict[str, Campaign]
    segments: list[Segment]


def _local_midnight(program: Program, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=program.tzinfo)


def _first_of_next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def seed_campaigns(program: Program, *, now: datetime) -> DemoCampaigns:
    """Create the demo segments and campaigns once each (looked up by name, never changed
    afterwards): a past campaign with a hold-out group, an exclusive weekend campaign running
    now with a budget and a daily cap, a fixed bonus scheduled for next month, and welcome and
    birthday bonuses. Dates are set from `now` on the first run, in the program's time zone."""
    today = now.astimezone(program.tzinfo).date()
    # Four weeks from a Monday, ending about three months ago.
    past_start = today - timedelta(weeks=16) - timedelta(days=today.weekday())
    next_month = _first_of_next_month(today)
    campaigns = [
        {
            "name": PAST_CAMPAIGN,
            "description": "Points doublés sur tous les achats pendant quatre semaines pour la "
            "rentrée. 20 % des membres touchés sont tenus à l'écart (groupe témoin) pour "
            "mesurer l'effet réel de la campagne.",
            "status": Campaign.Status.ENDED,
            "starts_at": _local_midnight(program, past_start),
            "ends_at": _local_midnight(program, past_start + timedelta(weeks=4)),
            "effect": Campaign.Effect.MULTIPLIER,
            "effect_value": Decimal("2"),
            "holdout_percent": Decimal("20"),
        },
        {
            "name": "Week-end points doublés",
            "description": "Points doublés le samedi et le dimanche. Exclusive : elle ne se "
            "cumule avec aucune autre campagne. Budget de 500 000 points, 20 000 par jour au "
            "plus.",
            "status": Campaign.Status.ACTIVE,
            "starts_at": _local_midnight(program, today),
            "ends_at": _local_midnight(program, today + timedelta(weeks=8)),
            "effect": Campaign.Effect.MULTIPLIER,
            "effect_value": Decimal("2"),
            "weekdays": [5, 6],
            "is_exclusive": True,
            "priority": 10,
            "budget_points": 500_000,
            "budget_period": Campaign.Period.DAY,
            "period_budget_points": 20_000,
        },
        {
            "name": "Mois de la beauté : 50 points offerts",
            "description": "50 points de plus pour tout panier d'au moins 30 € contenant un "
            "produit de beauté, pendant tout le mois.",
            "status": Campaign.Status.SCHEDULED,
            "starts_at": _local_midnight(program, next_month),
            "ends_at": _local_midnight(program, _first_of_next_month(next_month)),
            "effect": Campaign.Effect.FIXED,
            "effect_value": Decimal("50"),
            "target_categories": "beaute",
            "min_basket_amount": Decimal("30"),
        },
        {
            "name": "Bienvenue : 100 points",
            "description": "100 points offerts à chaque nouveau membre dès son inscription.",
            "status": Campaign.Status.ACTIVE,
            "trigger": Campaign.Trigger.WELCOME,
            "starts_at": _local_midnight(program, today),
            "effect": Campaign.Effect.FIXED,
            "effect_value": Decimal("100"),
        },
        {
            "name": "Joyeux anniversaire : 200 points",
            "description": "200 points offerts le jour de l'anniversaire du membre, une fois "
            "par an.",
            "status": Campaign.Status.ACTIVE,
            "trigger": Campaign.Trigger.BIRTHDAY,
            "starts_at": _local_midnight(program, today),
            "effect": Campaign.Effect.FIXED,
            "effect_value": Decimal("200"),
            "birthday_on_day": True,
        },
    ]
    with transaction.atomic():
        segments = [
            Segment.objects.get_or_create(
                program=program, name=name, defaults={"description": text, **conditions}
            )[0]
            for name, text, conditions in SEGMENTS
        ]
        by_name = {
            values["name"]: Campaign.objects.get_or_create(
                program=program, name=values["name"], defaults=values
            )[0]
            for values in campaigns
        }
    return DemoCampaigns(by_name[PAST_CAMPAIGN], by_name, segments)
