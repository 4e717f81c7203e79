"""manage.py show_urls_and_logins: what `make run` prints once the app is set up."""

from django.core.management.base import BaseCommand

from demo.accounts import DEMO_MEMBER
from demo.program import DEMO_SLUG
from loyalty.models import Store

from .seed_demo import DEMO_STAFF


class Command(BaseCommand):
    help = "Print the URLs of the running app and the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args, base_url, **options):
        base = base_url.rstrip("/")
        username, password = DEMO_STAFF
        member_email, member_password = DEMO_MEMBER
        lines = [
            "",
            "Loyalty platform is starting (web, worker and beat):",
            f"  Home              {base}/",
            f"  Staff admin       {base}/admin/       login: {username} / {password}",
            f"  KPI dashboards    {base}/staff/       (same staff login)",
            f"  Member portal     {base}/portal/{DEMO_SLUG}/",
            f"                    login: {member_email} / {member_password}",
            f"  POS API docs      {base}/api/v1/docs/",
            f"  OpenAPI schema    {base}/api/v1/schema/",
            f"  Health            {base}/healthz",
        ]
        store = Store.objects.filter(program__slug=DEMO_SLUG, slug="paris-rivoli").first()
        if store:
            lines.append(
                "  POS API key       .venv/bin/python manage.py create_api_key paris-rivoli "
                f"--program {DEMO_SLUG}"
            )
        lines.append("Stop with Ctrl-C.")
        self.stdout.write("\n".join(lines) + "\n")
