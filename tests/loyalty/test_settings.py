"""Settings: production refuses to start half-configured; defaults are French and Paris time.

The production checks run `manage.py` in subprocesses, because settings are read once at import.
Their database is a throwaway SQLite file, so they never touch the real one.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

# Variables of the calling environment that would change what these tests check.
CONTROLLED = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
}


def manage(tmp_path, *args, **env_vars):
    """Run manage.py in a subprocess with a controlled environment; return the finished process.

    DEBUG, SECRET_KEY and ALLOWED_HOSTS are set explicitly (empty when not given): the settings
    also read an optional .env file at the repository root (`make run` writes one with DEBUG=1
    and a SECRET_KEY), and only a variable present in the environment shadows it.
    """
    env = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    env.update(
        DEBUG="0",
        SECRET_KEY="",
        ALLOWED_HOSTS="",
        DATABASE_URL=f"sqlite:///{tmp_path / 'throwaway.sqlite3'}",
    )
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def improperly_configured_message(result) -> str:
    """The message of the ImproperlyConfigured that stopped the start, or fail."""
    assert result.returncode != 0, result.stdout + result.stderr
    prefix = "django.core.exceptions.ImproperlyConfigured:"
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert lines, result.stderr
    return lines[-1]


def strong_secret() -> str:
    return secrets.token_urlsafe(60)


def test_production_without_secret_key_refuses_to_start(tmp_path):
    result = manage(tmp_path, "check", ALLOWED_HOSTS="loyalty.example.com")

    message = improperly_configured_message(result)
    assert "SECRET_KEY" in message


def test_production_without_allowed_hosts_refuses_to_start(tmp_path):
    result = manage(tmp_path, "check", SECRET_KEY=strong_secret())

    message = improperly_configured_message(result)
    assert "ALLOWED_HOSTS" in message
    assert "SECRET_KEY" not in message


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=strong_secret(),
        ALLOWED_HOSTS="loyalty.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deploy_check_fails_on_a_weak_secret_key(tmp_path):
    """The check above can fail: the same command rejects a short, guessable key."""
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY="too-short",
        ALLOWED_HOSTS="loyalty.example.com",
    )

    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_defaults_are_french_and_paris_time():
    assert settings.LANGUAGE_CODE == "fr"
    assert {"fr", "en"} <= {code for code, _name in settings.LANGUAGES}
    assert settings.TIME_ZONE == "Europe/Paris"
    assert settings.USE_TZ is True
    assert settings.USE_I18N is True


@pytest.mark.django_db
def test_a_fresh_visitor_gets_french(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Language"] == "fr"
    assert '<html lang="fr">' in response.content.decode()


@pytest.mark.django_db
def test_the_language_switch_turns_the_site_to_english(client):
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/"})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"

    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Language"] == "en"
    html = response.content.decode()
    assert '<html lang="en">' in html
    assert "Staff administration" in html
    assert "POS API documentation" in html
