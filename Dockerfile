# syntax=docker/dockerfile:1
#
# Two targets (see docs/serving.md for the exact build/run lines):
#   serving         TensorFlow Serving with an export base copied in: production inference.
#   train (default) the rocket_ctr package for batch jobs: generate, train, evaluate, export.
#
# The TF Serving release is pinned to the TensorFlow minor the package exports with
# (setup.py: tensorflow==2.21.*), so every op in the SavedModel exists in the server.
ARG TF_SERVING_VERSION=2.21.0

# ----- serving: production model server ---------------------------------------------------------
FROM tensorflow/serving:${TF_SERVING_VERSION} AS serving
# Export base to copy in, relative to the build context: numeric version folders written by
# `rocket-ctr export` (light tower only).
ARG EXPORT_BASE=exports/light
ARG MODEL_NAME=rocket_ctr
# "true" for exports made with XLA (the `rocket-ctr export` default), "false" for --no-xla ones:
# TF Serving refuses XLA functions unless --xla_cpu_compilation_enabled=true.
ARG XLA=true
# Latency settings (TF Serving performance guide): no request batching, explicit thread pools.
# Intra-op threads parallelise one op of one request; inter-op threads run independent ops at
# once. Match INTRA_OP_THREADS to the cores the container gets (docker run --cpus); override at
# run time with -e.
ENV MODEL_NAME=${MODEL_NAME} \
    XLA=${XLA} \
    INTRA_OP_THREADS=4 \
    INTER_OP_THREADS=2 \
    POLL_SECONDS=30
COPY ${EXPORT_BASE} /models/${MODEL_NAME}
EXPOSE 8500 8501
# Shell form through sh -c so the environment above is expanded at start; extra `docker run`
# arguments are appended as further tensorflow_model_server flags.
ENTRYPOINT ["/bin/sh", "-c", "exec tensorflow_model_server --port=8500 --rest_api_port=8501 --model_name=\"${MODEL_NAME}\" --model_base_path=\"/models/${MODEL_NAME}\" --enable_batching=false --enable_model_warmup=true --file_system_poll_wait_seconds=\"${POLL_SECONDS}\" --tensorflow_intra_op_parallelism=\"${INTRA_OP_THREADS}\" --tensorflow_inter_op_parallelism=\"${INTER_OP_THREADS}\" --xla_cpu_compilation_enabled=\"${XLA}\" \"$@\"", "tensorflow_model_server"]

# ----- train (default target): batch jobs -----------------------------------------------------------
FROM python:3.11-slim AS train
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/rocket_ctr
# Only what the package needs (never a local .venv, data or run dirs from the build context).
COPY setup.py ./
COPY rocket_ctr ./rocket_ctr
COPY pipelines ./pipelines
COPY serving ./serving
COPY data ./data
RUN pip install . && useradd --create-home rocket
USER rocket
WORKDIR /work
ENTRYPOINT ["rocket-ctr"]
CMD ["--help"]
