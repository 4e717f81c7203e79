"""manage.py create_api_key: prints one key once, stores only its hash, and refuses ambiguity."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from loyalty.models import StoreAPIKey
from tests.factories import ProgramFactory, StoreFactory

pytestmark = pytest.mark.django_db


def create_api_key(*args, **options):
    out, err = StringIO(), StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def assert_stored_hashed(key, store):
    api_key = StoreAPIKey.objects.get_from_key(key)
    assert api_key.store == store
    assert api_key.hashed_key != key
    assert api_key.is_valid(key)
    assert StoreAPIKey.objects.is_valid(key)
    secret = key.partition(".")[2]
    assert secret
    row = StoreAPIKey.objects.filter(pk=api_key.pk).values().get()
    for column, value in row.items():
        assert key not in str(value), column
        assert secret not in str(value), column
    return api_key


def test_prints_exactly_one_key_and_stores_its_hash():
    store = StoreFactory(slug="paris-rivoli", name="Paris Rivoli")
    out, err = create_api_key("paris-rivoli")

    lines = out.splitlines()
    assert len(lines) == 1
    key = lines[0].strip()
    assert key
    assert " " not in key
    assert StoreAPIKey.objects.count() == 1
    api_key = assert_stored_hashed(key, store)
    assert api_key.name == "POS"
    # The message on stderr names the store but never carries the key's secret part.
    assert "Paris Rivoli" in err
    assert key.partition(".")[2] not in err


def test_name_option_labels_the_key():
    store = StoreFactory(slug="web")
    out, _ = create_api_key("web", name="Checkout")
    api_key = assert_stored_hashed(out.strip(), store)
    assert api_key.name == "Checkout"


def test_unknown_slug_is_an_error():
    StoreFactory(slug="paris-rivoli")
    with pytest.raises(CommandError, match="nowhere"):
        create_api_key("nowhere")
    assert not StoreAPIKey.objects.exists()


def test_slug_in_two_programs_needs_program_option():
    first, second = ProgramFactory(slug="first"), ProgramFactory(slug="second")
    StoreFactory(program=first, slug="web")
    web_second = StoreFactory(program=second, slug="web")

    with pytest.raises(CommandError, match="--program"):
        create_api_key("web")
    assert not StoreAPIKey.objects.exists()

    out, _ = create_api_key("web", program="second")
    assert_stored_hashed(out.strip(), web_second)
    assert StoreAPIKey.objects.count() == 1


def test_program_option_with_no_such_store_is_an_error():
    StoreFactory(program=ProgramFactory(slug="first"), slug="web")
    ProgramFactory(slug="second")
    with pytest.raises(CommandError):
        create_api_key("web", program="second")
    assert not StoreAPIKey.objects.exists()


def test_each_run_makes_a_new_key():
    store = StoreFactory(slug="app")
    first, _ = create_api_key("app")
    second, _ = create_api_key("app")
    assert first.strip() != second.strip()
    assert_stored_hashed(first.strip(), store)
    assert_stored_hashed(second.strip(), store)
