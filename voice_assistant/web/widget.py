"""The embeddable widget: `GET /widget.js`, one dependency-free script, and `GET /demo`, a page embedding it.

Both files ship inside the package (`web/static/`), so a non-editable install serves them too;
The demo page lives in the package (so an installed server has it); `assets/demo.html` links to it.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Response

STATIC: Traversable = files("voice_assistant.web") / "static"
# Short: a fix reaches every embedding site within minutes, and each page view does not refetch it.
WIDGET_CACHE = "public, max-age=300"


def widget_router() -> APIRouter:
    router = APIRouter()
    script = (STATIC / "widget.js").read_bytes()
    demo = (STATIC / "demo.html").read_bytes()

    @router.get("/widget.js")
    async def widget_js() -> Response:
        return Response(
            script,
            media_type="text/javascript; charset=utf-8",
            headers={
                "Cache-Control": WIDGET_CACHE,
                "X-Content-Type-Options": "nosniff",
                # Loadable by pages that isolate themselves (Cross-Origin-Embedder-Policy: require-corp).
                "Cross-Origin-Resource-Policy": "cross-origin",
            },
        )

    @router.get("/demo")
    async def demo_page() -> Response:
        return Response(demo, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    return router
