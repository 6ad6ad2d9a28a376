# The genreops app image: every Python service of docker-compose.yaml runs it (MLflow, Prefect
# server and worker, Dask scheduler and workers, Triton via `genreops serve`), with the exact
# versions of requirements/runtime.txt: those of requirements/lock.txt (`make setup`) without
# the dev tools (pytest, ruff, mypy, pre-commit, pip-audit).
#
#   docker build -f docker/app.Dockerfile -t genreops-app:0.1.0 .
#
# x86_64 only: the nvidia-pytriton wheel (tritonserver 2.51) is manylinux_2_35 x86_64;
# bookworm's glibc is 2.36. Its server needs only libc, libstdc++ and zlib from the base, and
# the Python backend stub needs libpython3.11.so, which the python image ships (shared build).
FROM python:3.11.14-slim-bookworm

ARG UV_VERSION=0.13.9
ARG APP_UID=10001

# Bytecode is compiled at install (the venv is read-only at run time): faster cold imports.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy

# ffmpeg decodes mp4/m4a (soundfile's bundled libsndfile does wav, flac, ogg and mp3).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid "${APP_UID}" genreops \
    && useradd --system --uid "${APP_UID}" --gid genreops --create-home \
       --home-dir /home/genreops --shell /usr/sbin/nologin genreops

# The venv's bin comes first on PATH: Triton's Python stub takes its Python from the first
# python3 there (src/genreops/serving/triton/server.py).
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && uv venv --python /usr/local/bin/python3.11 /opt/venv

WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY requirements/runtime.txt requirements/runtime.txt
RUN uv pip sync --python /opt/venv/bin/python requirements/runtime.txt

# The project as a regular (non-editable) install: flows, the Triton template and configs ship
# inside the package (genreops.flows, genreops.triton_models, genreops.configs), so the copied
# sources are only the build's input. Checked from another folder so nothing comes from /app.
COPY pyproject.toml README.md ./
COPY src/ src/
COPY flows/ flows/
COPY triton_models/ triton_models/
COPY configs/ configs/
RUN uv pip install --python /opt/venv/bin/python --no-deps . \
    && rm -rf build src/*.egg-info \
    && cd / && genreops --help >/dev/null \
    && python -c "import genreops.serving.triton.server as t; t.find_tritonserver()" \
    && python -c "import genreops.flows.deployments, genreops.serving.publish as p; \
assert p.TEMPLATE_DIR.is_dir() and '/opt/venv/' in p.TEMPLATE_DIR.as_posix()"

# GENREOPS_HOME is the genreops-home volume (a new named volume takes this owner). The source
# tree and the venv stay root's, so what is written at run time goes to the user's home:
# Prefect's UI bundle (copied at server start) and Numba's cache of compiled feature loops.
RUN mkdir -p /var/lib/genreops /home/genreops/.prefect/ui /home/genreops/.cache/numba \
    && chown -R genreops:genreops /var/lib/genreops /home/genreops
ENV GENREOPS_HOME=/var/lib/genreops \
    PREFECT_UI_STATIC_DIRECTORY=/home/genreops/.prefect/ui \
    NUMBA_CACHE_DIR=/home/genreops/.cache/numba \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true

USER genreops
# numba's caches compiled once at build time: processes that compile the same function at
# once can leave a broken cache (see genreops.data.warm)
RUN python -m genreops.data.warm
CMD ["genreops", "--help"]
