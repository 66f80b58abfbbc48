"""URLs as they may be shown: userinfo and query values masked, since either may be a token."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def url(value: str) -> str:
    """`https://u:pw@host/p?token=abc&x` -> `https://***@host/p?token=***&***`."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return "<unparseable URL>"  # it cannot be shown safely without knowing its parts
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    fragment = MASK if parts.fragment else ""
    if value.startswith(f"{parts.scheme}://"):
        # Built by hand: urlunsplit turns `sqlite:////abs/path` (empty host) into `sqlite://abs`.
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        shown += f"?{query}" if query else ""
        return shown + (f"#{fragment}" if fragment else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def _mask_pair(pair: str) -> str:
    key, equals, _ = pair.partition("=")
    return f"{key}={MASK}" if equals else MASK
