# GPU deployment: CUDA runtime, the app, a volume for model weights and one for the data directory.
#   docker build -t voice-assistant .
#   docker run --gpus all -p 7860:7860 -v hf-cache:/models -v va-data:/data voice-assistant
# For several instances, point them at one PostgreSQL: -e VA_DATABASE_URL=postgresql+psycopg://...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/models \
    VA_DATA_DIR=/data \
    VA_HOST=0.0.0.0 \
    VA_PORT=7860

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libsndfile1 curl \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The CUDA build of torch first, so that the project's `torch>=2.6` is already met.
RUN pip install torch --index-url https://download.pytorch.org/whl/cu128

WORKDIR /app
COPY pyproject.toml README.md ./
COPY voice_assistant ./voice_assistant
RUN pip install ".[postgres]"

VOLUME ["/models", "/data"]
EXPOSE 7860
# Ready means the model is loaded and warm and the store answers; a 7B download can take a while.
HEALTHCHECK --interval=15s --timeout=5s --start-period=900s --retries=3 \
  CMD curl -fsS http://127.0.0.1:7860/readyz || exit 1
CMD ["voice-assistant", "serve"]
