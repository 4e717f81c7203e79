"""manage.py create_api_key STORE_SLUG: print a new POS API key once (only its hash is kept)."""

from django.core.management.base import BaseCommand, CommandError

from loyalty.models import Store
from loyalty.services import create_store_api_key


class Command(BaseCommand):
    help = "Create a POS API key for a store and print it once. Only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("store_slug", help="slug of the store (or channel)")
        parser.add_argument(
            "--program", help="slug of the program, when several programs have that store slug"
        )
        parser.add_argument("--name", default="POS", help="a label for the key (default: POS)")

    def handle(self, *args, store_slug, program=None, name="POS", **options):
        stores = Store.objects.select_related("program").filter(slug=store_slug)
        if program:
            stores = stores.filter(program__slug=program)
        stores = list(stores[:2])
        if not stores:
            raise CommandError(f"No store with slug {store_slug!r}.")
        if len(stores) > 1:
            raise CommandError(
                f"Several programs have a store {store_slug!r}; say which with --program."
            )
        store = stores[0]
        api_key, key = create_store_api_key(store=store, name=name)
        self.stderr.write(
            f"API key {api_key.prefix}… created for {store.name} ({store.program.name}). "
            "It is shown once; store it in the POS configuration now."
        )
        self.stdout.write(key)
