"""Card numbers (13 digits ending in a Luhn check digit) and referral codes."""

import secrets

CARD_PREFIX = "9"
CARD_LENGTH = 13
REFERRAL_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: easy to read out
REFERRAL_LENGTH = 8


def luhn_check_digit(digits: str) -> str:
    """The Luhn digit that makes `digits + d` valid: it catches any single wrong digit and
    almost every swap of two neighbours, the usual mistakes at a till."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def is_valid_card_number(value: str) -> bool:
    return (
        len(value) == CARD_LENGTH and value.isdigit() and luhn_check_digit(value[:-1]) == value[-1]
    )


def normalize_card_number(value: str) -> str:
    """Strip the spaces and dashes people type or scanners add."""
    return "".join(ch for ch in str(value) if ch not in " -\t")


def new_card_number() -> str:
    body = CARD_PREFIX + "".join(secrets.choice("0123456789") for _ in range(CARD_LENGTH - 2))
    return body + luhn_check_digit(body)


def new_referral_code() -> str:
    return "".join(secrets.choice(REFERRAL_ALPHABET) for _ in range(REFERRAL_LENGTH))


def format_card_number(value: str) -> str:
    """Groups of four for printing: 9123 4567 8901 2."""
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
