"""Secret redaction and PII counting in span content."""

import pytest

from traces.scanning import REDACTED, detect_pii, iban_valid, luhn_valid, redact_secrets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-proj-Abcdefghijklmnopqrstuvwxyz0123 ok", f"key {REDACTED} ok"),
        ("sk-ant-api03-Abcdefghijklmnopqrstuvwxyz012345", REDACTED),
        ("aws AKIAIOSFODNN7EXAMPLE here", f"aws {REDACTED} here"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789 x", f"gh {REDACTED} x"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstu", REDACTED),
        ("slack xoxb-1234567890-abcdefghij", f"slack {REDACTED}"),
        ("maps AIzaSyA-abcdefghijklmnopqrstuvwxyz123456", f"maps {REDACTED}"),
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {REDACTED}"),
        ("postgres://admin:hunter2@db:5432/x", f"postgres://admin:{REDACTED}@db:5432/x"),
        ("api_key=abcd1234&x=1", f"api_key={REDACTED}&x=1"),
        ('{"apikey": "abcd1234"}', f'{{"apikey": "{REDACTED}"}}'),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl done",
            f"jwt {REDACTED} done",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY----- tail",
            f"{REDACTED} tail",
        ),
    ],
)
def test_it_redacts_each_family_of_secret(text, expected):
    assert redact_secrets(text) == (expected, 1)


def test_it_redacts_a_private_key_block_cut_short_to_the_end():
    text, count = redact_secrets("key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B")
    assert (text, count) == (f"key: {REDACTED}", 1)


def test_it_counts_a_bearer_jwt_once():
    text, count = redact_secrets(
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
    )
    assert count == 1
    assert "eyJ" not in text


def test_it_leaves_ordinary_text_alone():
    text = "The password policy says tokens expire; see https://example.com/docs for keys."
    assert redact_secrets(text) == (text, 0)


def test_it_counts_emails():
    assert detect_pii("write to bob@example.com or alice@mail.example.co.uk") == {"email": 2}


def test_it_counts_phone_numbers_but_not_timestamps_or_ids():
    assert detect_pii("call +1 415 555 2671 or (415) 555-2671 or 415.555.2671") == {"phone": 3}
    assert detect_pii("at 1732147200000, order 4155552671, trace 1732147200123456789") == {}


def test_it_counts_only_luhn_valid_cards():
    assert detect_pii("card 4111 1111 1111 1111") == {"card": 1}
    assert detect_pii("card 4111-1111-1111-1112") == {}
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_it_counts_only_ibans_with_a_valid_checksum():
    assert detect_pii("pay GB82 WEST 1234 5698 7654 32 please") == {"iban": 1}
    assert detect_pii("pay GB82WEST12345698765433 please") == {}
    assert iban_valid("DE89370400440532013000")


def test_it_finds_nothing_in_text_without_digits_or_at_signs():
    assert detect_pii("nothing personal here at all") == {}


def test_hostile_inputs_stay_fast():
    # Patterns with unbounded repeats could go quadratic on these; bounded ones return at once.
    text = "a.a" * 20000 + "://"
    assert redact_secrets(text) == (text, 0)
    # No domain after the @, and one 50,000-digit run is an id, not a card or a phone.
    assert detect_pii("x" * 50000 + "@" + "1" * 50000) == {}
