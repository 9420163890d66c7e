#!/usr/bin/env bash
# Idempotent: podman with its Docker-compatible socket, and a base image built from Debian
# packages (no registry can be pulled from here). Used by CI and by developers on this machine.
set -euo pipefail
SOCK=/run/podman/podman.sock
BASE_IMAGE=${MODELYARD_BASE_IMAGE:-localhost/python-base:bookworm}

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi

if [ ! -f /etc/containers/containers.conf ] || ! grep -q 'runtime = "runc"' /etc/containers/containers.conf; then
  mkdir -p /etc/containers
  cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
fi

if ! curl -s --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; then
  mkdir -p "$(dirname "$SOCK")"
  # From /: the service outlives this checkout, and once its working directory is deleted every
  # container start through the socket fails with runc's "write child: broken pipe".
  nohup env -C / podman system service --time=0 "unix://$SOCK" >/tmp/podman-service.log 2>&1 &
  for _ in $(seq 30); do curl -s --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1 && break; sleep 1; done
fi

if ! podman image exists "$BASE_IMAGE"; then
  dir=$(mktemp -d)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$dir" >/tmp/debootstrap.log 2>&1
  tar -C "$dir" -c . | podman import - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
fi
echo "podman ready: DOCKER_HOST=unix://$SOCK, base image $BASE_IMAGE"
