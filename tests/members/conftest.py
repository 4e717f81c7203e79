import pytest
from rest_framework.test import APIClient

from tests.factories import ProgramFactory, StoreFactory, TierFactory, enrol, make_api_key


@pytest.fixture
def program(db):
    program = ProgramFactory(slug="demo", return_window_days=30, backdating_days=30)
    TierFactory(program=program, name="Bronze", rank=0)
    return program


@pytest.fixture
def store(program):
    return StoreFactory(program=program, slug="paris-01", channel="shop")


@pytest.fixture
def api(store):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {make_api_key(store)}")
    return client


@pytest.fixture
def member(program):
    return enrol(program, email="claire@example.fr", first_name="Claire")
