"""Referral codes and share links: unguessable, easy to type, with the campaign's UTM tags.

A code is 10 symbols of a 30-symbol alphabet without look-alikes (no 0/O, 1/I/L, U),
49 random bits: guessing one of a million issued codes takes ~10^8 tries, and `/r/{code}` is
rate limited per IP. Typed codes are read case-insensitively, with spaces and dashes ignored.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 10
UTM_SOURCE = "referral"
UTM_MEDIUM_LINK = "share-link"


def new_code() -> str:
    """A fresh random code (the caller checks it is not taken: a collision is ~2^-50 a pair)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(typed: str) -> str | None:
    """The canonical spelling of a typed or followed code, or None if it cannot be one."""
    code = typed.strip().upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def utm_tags(campaign_slug: str | None, medium: str = UTM_MEDIUM_LINK) -> dict[str, str]:
    tags = {"utm_source": UTM_SOURCE, "utm_medium": medium}
    if campaign_slug:
        tags["utm_campaign"] = campaign_slug
    return tags


def share_link(public_url: str, code: str, campaign_slug: str | None) -> str:
    """The link a referrer shares: the service's `/r/{code}` with the campaign's UTM tags."""
    return with_query(f"{public_url.rstrip('/')}/r/{code}", utm_tags(campaign_slug))


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` added to its query (replacing parameters of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    query += list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query),
                       parts.fragment))
