#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine: "docker compose
# config" (the v2 plugin) when present, else "docker-compose config" (v1),
# installing Debian's docker-compose package when neither is there and apt
# is available. Dummy secrets satisfy the ${VAR:?} checks; the profile
# "standalone-ingest" is included so that its service is checked too.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

compose=()
if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
elif command -v docker-compose >/dev/null; then
	compose=(docker-compose)
elif command -v apt-get >/dev/null; then
	echo "check-compose: installing docker-compose (Debian package)" >&2
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
	compose=(docker-compose)
else
	echo "check-compose: neither 'docker compose' nor 'docker-compose' is available" >&2
	exit 1
fi
"${compose[@]}" version

export JWT_SECRET=check-compose-secret-0123456789abcdef
export NATS_PASSWORD=check-compose-nats
export NATS_ROUTE_PASSWORD=check-compose-route
"${compose[@]}" -f docker-compose.yml --profile standalone-ingest config -q

# The ${VAR:?} guards must stop a start without secrets.
if env -u JWT_SECRET "${compose[@]}" -f docker-compose.yml config -q 2>/dev/null; then
	echo "check-compose: docker-compose.yml accepted a missing JWT_SECRET" >&2
	exit 1
fi
echo "check-compose: docker-compose.yml is valid"
