"""The HTTP side: FastAPI app, client-contract routes, Gradio UI."""
