"""`GET /webrtc/ice-servers`: the STUN/TURN servers a browser gives its RTCPeerConnection before it offers.

Credentials minted from coturn's shared secret are fresh on every call and must not be cached; pages on
other origins need a site key here as on the offer (web/sites.py), so that no other site hands out this
server's TURN relay.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from voice_assistant.transport.ice_servers import IceServers


def ice_servers_router(servers: IceServers) -> APIRouter:
    router = APIRouter()

    @router.get("/webrtc/ice-servers")
    async def ice_servers(response: Response) -> dict[str, Any]:
        response.headers["Cache-Control"] = "no-store"
        return servers.browser()

    return router
