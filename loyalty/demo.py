"""The demo program: a French retail chain with shops, web and app channels. Idempotent."""

from datetime import date
from decimal import Decimal

from django.db import transaction

from .models import EarningRule, Program, ProgramCost, Store, Tier

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
