"""Celery tasks of analytics: thin, each calling a service; safe to run twice (upserts)."""

from celery import shared_task

from loyalty.models import Program

from . import services


@shared_task(name="analytics.tasks.recompute_kpis")
def recompute_kpis(
    program_ids: list[int] | None = None,
    period_kinds: list[str] | None = None,
    full: bool = False,
    user_id: int | None = None,
) -> dict:
    """Recompute KPI snapshots (incremental unless `full`) for the programs given, or every
    active program, and the period kinds given, or all of them."""
    programs = None
    if program_ids is not None:
        programs = Program.objects.filter(pk__in=program_ids).order_by("pk")
    user = None
    if user_id is not None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(pk=user_id).first()
    return services.recompute_programs(
        programs=programs,
        period_kinds=period_kinds or services.ALL_KINDS,
        full=full,
        user=user,
    )
