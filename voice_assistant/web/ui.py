"""The browser voice chat: fastrtc's WebRTC microphone, the live conversation, the session id."""

from __future__ import annotations

from typing import Any

import gradio as gr
from fastrtc import WebRTC

from voice_assistant.config import Settings
from voice_assistant.transport.ice_servers import IceServers
from voice_assistant.transport.webrtc import VoiceHandler

_INTRO = """# Voice assistant
Press the microphone and talk. Each pause ends a turn; the reply streams in below.
Keep the **session id** to come back later: paste it before connecting and the assistant remembers the
conversation. Leave it empty for a new session."""


def build_ui(handler: VoiceHandler, settings: Settings, ice_servers: IceServers) -> gr.Blocks:
    async def rtc_configuration() -> dict[str, Any]:
        """fastrtc's component asks for it (its `turn` call) before each connection: fresh credentials."""
        return ice_servers.browser()

    blocks: gr.Blocks
    with gr.Blocks(title="Voice assistant") as blocks:
        gr.Markdown(_INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                microphone = WebRTC(
                    label="Microphone",
                    mode="send-receive",
                    modality="audio",
                    elem_id="microphone",
                    full_screen=False,
                    rtc_configuration=rtc_configuration,
                )
                # Offers through Gradio's route reach this component's own peer connections.
                microphone.server_rtc_configuration = ice_servers.server()
                session_box = gr.Textbox(
                    label="Session id",
                    placeholder="empty: a new session; paste an id to resume",
                    elem_id="session-id",
                    show_copy_button=True,
                )
                new_session = gr.Button("New session", elem_id="new-session")
            with gr.Column(scale=2):
                chat = gr.Chatbot(type="messages", label="Conversation", height=520, elem_id="chat")

        microphone.stream(
            handler,
            inputs=[microphone, session_box],
            outputs=[microphone],
            concurrency_limit=settings.web.max_sessions,
        )

        def show(_box: str, _chat: Any, session_id: str, messages: list[dict[str, str]]) -> tuple[str, Any]:
            return session_id, messages

        microphone.on_additional_outputs(
            show,
            inputs=[session_box, chat],
            outputs=[session_box, chat],
            concurrency_limit=settings.web.max_sessions,
            show_progress="hidden",
        )
        new_session.click(lambda: ("", []), outputs=[session_box, chat])
    return blocks
