# syntax=docker/dockerfile:1
# machinepool-controller image: the locked dependencies and the project's wheel in a
# virtualenv, on a slim Python base, running as the non-root UID 65532.
#
#   docker build -t machinepool-controller:0.1.0 .
#
# Stage 1 builds a wheel and installs it with the exact versions of requirements.lock
# (--no-deps: nothing is resolved at build time). Stage 2 copies only the virtualenv:
# no pip cache, no build tools, no source tree. Every dependency ships manylinux wheels,
# so no compiler is needed in either stage.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /dist/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="machinepool-controller" \
      org.opencontainers.image.description="Cluster API MachinePool controller (Python, asyncio)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["machinepool-controller", "run"]
