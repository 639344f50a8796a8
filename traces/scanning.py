"""Secrets and PII in span content: secrets are redacted at ingest, PII is only counted.

redact_secrets(text) -> (text, count)  replaces API keys, bearer tokens, passwords in URLs,
                                       private key blocks and JWTs with "[REDACTED]".
detect_pii(text) -> {type: count}      counts emails, phone numbers, card numbers (Luhn-checked)
                                       and IBANs (mod-97 checked).

Both run on every span the receiver stores. Python's re tries every branch of an alternation
at every position, so one big combined pattern costs tens of µs on ordinary text. Instead each
family has its own pattern that starts with a literal or a character class (which re skips to
quickly), and runs only when a cheap substring test says it could match.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"
_KEEP_PREFIX = r"\1" + REDACTED

# (substring triggers, test against lower-cased text?, pattern, replacement)
# Order matters: specific token shapes first, so "Bearer eyJ…" or "api_key=sk-…" is redacted
# once, by the specific family, and the generic families skip the "[REDACTED]" left behind.
_SECRET_FAMILIES: list[tuple[tuple[str, ...], bool, re.Pattern, str]] = [
    (
        ("-----BEGIN",),
        False,
        # A block cut short (content truncated upstream) is redacted to the end of the text.
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)"
        ),
        REDACTED,
    ),
    (
        ("eyJ",),
        False,
        re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        REDACTED,
    ),
    # OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-) keys share one shape.
    (("sk-",), False, re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), REDACTED),
    (("AKIA", "ASIA"), False, re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        False,
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"),
        REDACTED,
    ),
    (("xox",), False, re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}"), REDACTED),
    (("AIza",), False, re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (
        ("bearer",),
        True,
        re.compile(r"((?i:bearer)[ \t]+)[A-Za-z0-9._~+/=-]{8,}"),
        _KEEP_PREFIX,
    ),
    (
        ("://",),
        False,
        # scheme://user:password@host → scheme://user:[REDACTED]@host
        re.compile(r"(://[^\s:/@\"'\\]{1,256}:)[^\s@/\"'\\]{1,256}@"),
        _KEEP_PREFIX + "@",
    ),
    (
        (
            "api_key",
            "api-key",
            "apikey",
            "secret",
            "access_token",
            "access-token",
            "auth_token",
            "auth-token",
            "passw",
            "pwd",
        ),
        True,
        # api_key=…, "password": "…", apikey: … (also inside JSON-escaped text: \"api_key\": \"…\")
        re.compile(
            r"((?i:\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token"
            r"|client[_-]?secret|password|passwd|pwd)\b)"
            r"\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?)(?!\[REDACTED\])[^\s\"',;&\\]{4,}"
        ),
        _KEEP_PREFIX,
    ),
]

# Shortest secret we look for ("://a:bc@" is 8).
_MIN_SECRET_LEN = 8


def redact_secrets(text: str) -> tuple[str, int]:
    """Return text with every secret replaced by [REDACTED], and how many were replaced."""
    if len(text) < _MIN_SECRET_LEN:
        return text, 0
    total = 0
    lowered = None
    for triggers, on_lowered, pattern, replacement in _SECRET_FAMILIES:
        if on_lowered:
            if lowered is None:
                lowered = text.lower()
            haystack = lowered
        else:
            haystack = text
        for trigger in triggers:
            if trigger in haystack:
                break
        else:
            continue
        text, count = pattern.subn(replacement, text)
        if count:
            total += count
            lowered = None
    return text, total


# --- PII -----------------------------------------------------------------------------------

# The lookbehind starts the local part only at a word start, so a long run of word characters
# is scanned once, not once per position.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# A run of digits with phone/card separators; classified below. Starting with a character
# class lets re skip quickly to candidates.
_NUMBER = re.compile(r"[+(0-9][0-9 ().-]{6,30}[0-9]")
# Card: 13-19 digits starting 2-6 (the issuer ranges), optionally grouped by spaces or dashes.
# The leading digit keeps epoch timestamps and most ids (which start with 1) out.
_CARD = re.compile(r"[2-6][0-9](?:[ -]?[0-9]){11,17}")
# International: +CC then groups; the digit count is checked separately.
_PHONE_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}")
# NANP-style: (415) 555-2671, 415-555-2671, 415.555.2671 — separators required, so a plain
# ten-digit id or timestamp is not a phone number.
_PHONE_NANP = re.compile(r"(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}")
# IBAN: country, check digits, then 11-30 alphanumerics, optionally in groups of four.
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_HAS_DIGIT = re.compile(r"[0-9]")
# Characters that, right before or after a candidate, mean it is part of a longer token.
_GLUED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-+/")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    compact = iban.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    # Letters count as two-digit numbers (A=10 … Z=35), which is exactly int(char, 36).
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


def _classify_number(candidate: str) -> str | None:
    digits = sum(char.isdigit() for char in candidate)
    if 13 <= digits <= 19 and _CARD.fullmatch(candidate):
        plain = candidate.replace(" ", "").replace("-", "")
        if luhn_valid(plain):
            return "card"
        return None
    if candidate[0] == "+":
        if 8 <= digits <= 15 and _PHONE_INTERNATIONAL.fullmatch(candidate):
            return "phone"
        return None
    if digits == 10 and _PHONE_NANP.fullmatch(candidate):
        return "phone"
    return None


def detect_pii(text: str) -> dict[str, int]:
    """Count PII by type in text: {"email": 2, "phone": 1, "card": 1, "iban": 1}."""
    found: dict[str, int] = {}
    if len(text) < 6:
        return found
    if "@" in text:
        emails = len(_EMAIL.findall(text))
        if emails:
            found["email"] = emails
    if not _HAS_DIGIT.search(text):
        return found
    end_of_text = len(text)
    for match in _NUMBER.finditer(text):
        start, end = match.span()
        if (start and text[start - 1] in _GLUED) or (end < end_of_text and text[end] in _GLUED):
            continue
        kind = _classify_number(match.group(0).strip())
        if kind:
            found[kind] = found.get(kind, 0) + 1
    ibans = sum(1 for match in _IBAN.finditer(text) if iban_valid(match.group(0)))
    if ibans:
        found["iban"] = ibans
    return found


def merge_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for kind, count in more.items():
        into[kind] = into.get(kind, 0) + count
