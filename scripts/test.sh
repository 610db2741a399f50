#!/usr/bin/env bash
# Install everything from nothing, then run the whole test suite (slow, server and Docker tests included).
# Debian's prometheus and nghttp2-client (h2load) are installed where this runs as root with apt.
#
# Docker tests need an engine: where none runs and this is root with apt (CI, a fresh VM), .ci/docker-setup.sh
# installs docker.io, starts dockerd and builds the slim Triton image. Set TRITONGEN_SKIP_DOCKER_SETUP=1 to skip
# that; the Docker tests then skip, unless TRITONGEN_REQUIRE_DOCKER=1 (CI sets it), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh all,test
# Prometheus (Debian's package: prometheus, promtool) for tests/kube/test_metrics.py, which runs the generated
# autoscaling queries in a real Prometheus. RUNLEVEL=1: apt must not start the packaged daemon on port 9090.
if ! command -v prometheus >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# h2load (Debian's nghttp2-client): bench's native load generator, whose tests skip without it (fail in CI, where
# .ci/run sets TRITONGEN_REQUIRE_NATIVE_LOAD=1).
if ! command -v h2load >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
fi
if [[ "${TRITONGEN_SKIP_DOCKER_SETUP:-0}" != 1 ]]; then
  if docker info >/dev/null 2>&1 || { [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; }; then
    bash .ci/docker-setup.sh
  else
    echo "[test.sh] no Docker engine and no root apt: Docker tests will skip" >&2
  fi
fi
.venv/bin/ruff check tritongen tests benchmarks examples
exec .venv/bin/python -m pytest -ra --durations=15 "$@"
