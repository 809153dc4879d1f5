"""`create_app(settings)`: the one FastAPI app with the client contract, fastrtc and the Gradio UI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import gradio as gr
from fastapi import FastAPI
from fastrtc import Stream

from voice_assistant.assistant import Assistant
from voice_assistant.config import Settings
from voice_assistant.load import LoadLimits, LoadSensor
from voice_assistant.transport.ice import gather_host_candidates_on
from voice_assistant.transport.ice_servers import IceServers
from voice_assistant.transport.phone import PhoneCall
from voice_assistant.transport.realtime import RealtimeConnection
from voice_assistant.transport.receiver import receive_audio_promptly
from voice_assistant.transport.webrtc import Connections, VoiceHandler
from voice_assistant.web.admission import Admission
from voice_assistant.web.api import api_router
from voice_assistant.web.body_limit import BodyLimit
from voice_assistant.web.drain import Drain, Live
from voice_assistant.web.errors import install_error_handlers
from voice_assistant.web.ice_servers import ice_servers_router
from voice_assistant.web.logs import redact_access_log
from voice_assistant.web.offer import Bindings, NewOffers, offer_router
from voice_assistant.web.realtime import realtime_router
from voice_assistant.web.sites import ConnectionLimits, SiteGate, Sites
from voice_assistant.web.telephone import telephone_router
from voice_assistant.web.ui import build_ui
from voice_assistant.web.ui_offer import UiOfferGate
from voice_assistant.web.ui_transcript import UiTranscript
from voice_assistant.web.widget import widget_router

logger = logging.getLogger(__name__)


def create_app(settings: Settings, *, assistant: Assistant | None = None) -> FastAPI:
    assistant = assistant or Assistant(settings)
    receive_audio_promptly()
    gather_host_candidates_on(settings.web.ice_addresses)
    redact_access_log()
    ice_servers = IceServers(settings.ice)
    bindings = Bindings()
    live: Live[VoiceHandler] = Live()
    load = LoadSensor(LoadLimits.from_settings(settings.web), assistant.metrics)
    handler = VoiceHandler(
        Connections(
            pipelines=assistant.pipelines,
            metrics=assistant.metrics,
            audio=load.audio,
            bound_session=bindings.take,
            ui=lambda: UiTranscript(assistant.store),
            speak=settings.speech.webrtc,
        ),
        live,
    )
    stream = Stream(
        handler,
        modality="audio",
        mode="send-receive",
        concurrency_limit=settings.web.max_sessions,
        verbose=False,
    )
    # Set, not passed: Stream makes one fixed RTCConfiguration of a dict; this one mints per connection.
    stream.server_rtc_configuration = ice_servers.server()
    blocks = build_ui(handler, settings, ice_servers)
    stream.ui = blocks
    admission = Admission(settings, load=load, metrics=assistant.metrics)
    calls: Live[PhoneCall] = Live()
    realtime: Live[RealtimeConnection] = Live()
    drain = Drain(
        admission=admission,
        live=(live, calls, realtime),
        hub=assistant.hub,
        timeout_s=settings.web.drain_timeout_s,
        pending=lambda: bindings.waiting(stream.pcs),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The model loads in the background: /healthz answers at once, /readyz once it is warm.
        starting = asyncio.create_task(assistant.start())
        sampling = asyncio.create_task(load.run(), name="load sensor")
        try:
            yield
        finally:
            starting.cancel()
            sampling.cancel()
            await asyncio.gather(*(live.shutdown() for live in list(handler.live)), return_exceptions=True)
            for pc in list(stream.pcs.values()):
                await pc.close()
            await assistant.close()

    app = FastAPI(title="voice-assistant", lifespan=lifespan)
    app.state.assistant = assistant
    app.state.stream = stream
    app.state.drain = drain
    app.state.load = load
    install_error_handlers(app, assistant.metrics)
    limits = ConnectionLimits(settings, store=assistant.store, leases=assistant.leases, live=stream.pcs)
    offers = NewOffers(assistant.ready, admission, limits)
    app.add_middleware(UiOfferGate, offers=offers, metrics=assistant.metrics)
    app.add_middleware(SiteGate, sites=Sites(settings.web.sites), public_url=settings.web.public_url)
    app.add_middleware(BodyLimit)
    app.include_router(offer_router(assistant, stream, offers, bindings))
    app.include_router(api_router(assistant, admission))
    app.include_router(telephone_router(assistant, admission, calls, load.audio))
    app.include_router(realtime_router(assistant, admission, realtime))
    app.include_router(widget_router())
    app.include_router(ice_servers_router(ice_servers))
    mounted: FastAPI = gr.mount_gradio_app(app, blocks, path="/")
    return mounted
