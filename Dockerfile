# The sdfarm image: workers, the CLI and Flower. Build on a machine with internet access:
#   docker compose build                      (CUDA build of torch, for NVIDIA GPUs)
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim

# The PyTorch wheel index whose CUDA version suits the hosts' NVIDIA driver (see the PyTorch
# install selector). torch is installed first so that sdfarm keeps it.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/sdfarm
COPY pyproject.toml README.md ./
COPY sdfarm ./sdfarm
RUN pip install . "flower==2.2.0" && pip install --no-deps "open-clip-torch==3.3.0"

# Not root: a worker runs model code. /data holds outputs, models and the HF cache.
RUN useradd --create-home --uid 1000 sdfarm && mkdir -p /data && chown sdfarm:sdfarm /data
USER sdfarm
ENV SDFARM_OUTPUT_DIR=/data/outputs \
    SDFARM_MODEL_DIR=/data/models \
    HF_HOME=/data/huggingface
VOLUME ["/data"]

CMD ["sdfarm", "worker", "--gpu", "0"]
