"""A browser-like WebRTC offer for tests that post to an offer route and need no connection behind it."""

from __future__ import annotations

from aiortc import RTCPeerConnection


async def browser_offer() -> str:
    """The SDP of an offer with an audio track and a data channel, as the UI and the widget send; its
    peer is closed at once, so nobody answers the server's ICE checks."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        pc.createDataChannel("text")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()
