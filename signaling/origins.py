"""Which web origins may open the call's WebSocket (browsers send `Origin`; a page elsewhere must not connect).

Pure functions: the settings are passed in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """The origin (`scheme://host[:port]`, lower case, default port left out) of an http(s) URL, else None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets in an origin
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def allowed_origins(configured: list[str], public_url: str) -> frozenset[str]:
    """The configured origins, or else the origin of the public URL (where the call page is served)."""
    origins = {origin for origin in map(origin_of, configured or [public_url]) if origin is not None}
    return frozenset(origins)


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """Only an exact origin match: no `Origin` (not a browser page), `null` or a look-alike host is refused."""
    if not origin or origin.strip().lower() == "null":
        return False
    normalised = origin_of(origin)
    return normalised is not None and normalised in allowed
