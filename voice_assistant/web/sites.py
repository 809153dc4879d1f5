"""Who may use this server from a web page: site keys bound to origins, CORS for them, connection limits.

A browser always tells which page a request comes from (`Origin`) and a page cannot lie about it. The
server's own pages (the Gradio UI at /, /demo) and clients that are not browsers (no `Origin`) pass as
before. A page on any other origin must present a site key (`X-Site-Key`) whose origins include its own,
on `/webrtc/...` and `/api/...`; only those origins get CORS headers there. A site key is not a secret
(it sits in the page's HTML): it names a site, and its origins are what keep other sites out.

New connections are limited per client address and per site key (moving window), and the connections
open at once per client address and per site key: counted in the database (history/limits.py), so they
hold across every instance on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Container, Mapping, Sequence
from typing import Final

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from voice_assistant.clock import Clock, utc_now
from voice_assistant.config import Settings, normalized_origin
from voice_assistant.history.leases import Leases
from voice_assistant.history.limits import RATE_WINDOW, LimitBook, Rate, bucket
from voice_assistant.web.errors import ApiError

SITE_KEY_HEADER: Final = "X-Site-Key"
GUARDED_PATHS: Final = ("/webrtc/offer", "/webrtc/ice-servers", "/api/")
_STATE: Final = "site_key"
"""Where the gate leaves the admitting site key for the routes (`request.state`)."""


class SiteRefused(Exception):
    """A page's origin may not use this server; the message says why."""


class Sites:
    """The site keys and the origins each admits (`VA_SITES`)."""

    def __init__(self, sites: Mapping[str, Sequence[str]]) -> None:
        self._origins = {key: frozenset(map(normalized_origin, origins)) for key, origins in sites.items()}

    @property
    def origins(self) -> list[str]:
        """Every origin some key admits: the ones that get CORS headers."""
        return sorted({origin for origins in self._origins.values() for origin in origins})

    def admit(self, origin: str | None, key: str | None, *, own: Collection[str]) -> str | None:
        """The site key that admits a request from `origin`, or None when none is needed (no `Origin`,
        or the server's own); raises SiteRefused otherwise."""
        if origin is None or origin in own:
            return None
        if not key:
            raise SiteRefused(f"origin {origin} needs a site key ({SITE_KEY_HEADER}) to use this server")
        allowed = self._origins.get(key)
        if allowed is None:
            raise SiteRefused("unknown site key")
        if origin not in allowed:
            raise SiteRefused(f"origin {origin} is not allowed for this site key")
        return key


class SiteGate:
    """ASGI middleware on the guarded paths: CORS for the origins of the site keys (preflights
    included), then the site-key check, whose refusal is a 403 JSON error."""

    def __init__(self, app: ASGIApp, *, sites: Sites, public_url: str | None) -> None:
        self._app = app
        self._sites = sites
        self._public = normalized_origin(public_url) if public_url else None
        self._cors = CORSMiddleware(
            self._checked,
            allow_origins=sites.origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", SITE_KEY_HEADER],
            expose_headers=["Retry-After"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(GUARDED_PATHS):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            key = self._sites.admit(
                request.headers.get("origin"), request.headers.get(SITE_KEY_HEADER), own=self._own(request)
            )
        except SiteRefused as exc:
            await JSONResponse({"error": str(exc)}, status_code=403)(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE] = key
        await self._app(scope, receive, send)

    def _own(self, request: Request) -> set[str]:
        """The server's own origin: VA_PUBLIC_URL's when set (the `Host` header is not to be trusted on
        the open internet: DNS rebinding), else the one this request reached."""
        if self._public is not None:
            return {self._public}
        try:
            return {normalized_origin(str(request.base_url))}
        except ValueError:  # a Host header that makes no origin
            return set()


class ConnectionLimits:
    """How many new connections a client address and a site key may open per minute, and how many a client
    address and a site key may hold open at once, counted in the database across every instance on it."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: LimitBook,
        leases: Leases,
        live: Container[str],
        clock: Clock = utc_now,
    ) -> None:
        web = settings.web
        self._per_address = web.offers_per_minute_per_address
        self._per_key = web.offers_per_minute_per_key
        self._open_per_address = web.max_sessions_per_address
        self._max_open = web.max_connections_per_key
        self._retry_after_s = web.retry_after_s
        self._store = store
        self._leases = leases
        self._live = live
        """Connection ids that are open now (fastrtc's own table, so a closed one leaves by itself)."""
        self._clock = clock

    async def admit(self, connection: HTTPConnection) -> None:
        """Count a new connection: 429 past a rate, 503 when its site key holds all it may."""
        key = _site_key(connection)
        rates = [Rate(bucket("address", _address(connection)), self._per_address, RATE_WINDOW)]
        if key is not None:
            rates.append(Rate(bucket("key", key), self._per_key, RATE_WINDOW))
            self._require_room(key, await self._leases.count(_pool(key)))
        refused = await self._store.hit(rates, now=self._clock())
        if refused is not None:
            kind = "address" if refused.rate is rates[0] else "site key"
            raise ApiError(
                429,
                f"too many new connections from this {kind}: at most {refused.rate.amount} a minute",
                headers={"Retry-After": str(max(1, math.ceil(refused.retry_after_s)))},
            )

    async def hold(
        self, connection: HTTPConnection, name: str, alive: Callable[[], bool] | None = None
    ) -> None:
        """Count `name` as open for its client address and its site key for as long as `alive()` says
        (by default: while `name` is in `live`, so create the connection right after, with no await in
        between, so that it is there before anyone looks) or until `release(name)`. 429 when the address
        holds all it may, 503 when the site key does; nothing is held then."""
        alive = alive or (lambda: name in self._live)
        held = await self._leases.take(
            bucket("address", _address(connection)),
            _address_lease(name),
            limit=self._open_per_address,
            alive=alive,
        )
        if held is not None:
            raise ApiError(
                429,
                f"{held} connections are open from this address, the most it may: close one first",
                headers={"Retry-After": str(self._retry_after_s)},
            )
        key = _site_key(connection)
        if key is not None:
            held = await self._leases.take(_pool(key), name, limit=self._max_open, alive=alive)
            if held is not None:
                await self.release(name)
                self._require_room(key, held)

    async def release(self, name: str) -> None:
        """`name` is closed: its places are free at once on every instance."""
        await self._leases.release(_address_lease(name))
        await self._leases.release(name)

    def _require_room(self, key: str, held: int) -> None:
        if held >= self._max_open:
            raise ApiError(
                503,
                f"this site has {held} connections open, the most it may: "
                f"try again in {self._retry_after_s} s",
                headers={"Retry-After": str(self._retry_after_s)},  # the widget waits so long, then retries
            )


def _address(connection: HTTPConnection) -> str:
    """The client's address: uvicorn's, which comes from X-Forwarded-For only from FORWARDED_ALLOW_IPS."""
    return connection.client.host if connection.client else "unknown"


def _address_lease(name: str) -> str:
    """The name of `name`'s place in its address's pool: a holder knows its leases by name alone."""
    return f"address:{name}"


def _pool(key: str) -> str:
    return bucket("site", key)


def _site_key(connection: HTTPConnection) -> str | None:
    key: str | None = connection.scope.get("state", {}).get(_STATE)
    return key
