#!/usr/bin/env bash
# Installs Docker Compose v2 as the Docker CLI plugin (`docker compose`), the
# Compose of a current server, when `docker compose version` does not answer
# with a v2. Run as root (apt-get, /usr/libexec); .ci/run calls it.
#
# Debian 12's own docker-compose package is Compose v1 (end of life since
# 2023). Debian 13's docker-compose package is a Compose v2 binary that needs
# only libc (>= 2.34; Debian 12 has 2.36): on a machine whose apt has no such
# candidate, the package is fetched with `apt-get download` from a trixie
# source of this script's own (its own sources list and package lists under a
# temporary folder; the system's apt sources and preferences are not changed,
# nothing else comes from trixie), checked by apt against Debian's archive
# keys as any package, and only its plugin binary is installed (`dpkg -x`)
# as /usr/libexec/docker/cli-plugins/docker-compose. The `docker-compose`
# command (Compose v1, if installed) is left as it is.
set -euo pipefail
plugin=/usr/libexec/docker/cli-plugins/docker-compose

is_v2() { docker compose version 2>/dev/null | grep -qE 'version v?2\.'; }
if is_v2; then
  docker compose version
  exit 0
fi
command -v docker >/dev/null || { echo "compose-v2: the docker command is missing (apt-get install docker.io)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "compose-v2: run as root (sudo $0): it installs $plugin" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# This machine's own apt candidate first (Debian 13 and later ship Compose v2).
candidate=$(apt-cache policy docker-compose 2>/dev/null | sed -n 's/^ *Candidate: *//p')
opts=()
case "$candidate" in
2.* | [3-9].*) ;;
*)
  # The mirror this machine's apt uses, with Debian 13's suite.
  mirror=${COMPOSE_V2_MIRROR:-$(grep -hoE '^(URIs: *|deb +)https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1 | sed -E 's/^(URIs: *|deb +)//; s/ *$//' || true)}
  mirror=${mirror:-http://deb.debian.org/debian}
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || { echo "compose-v2: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 1; }
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  echo "deb [signed-by=$keyring] $mirror trixie main" > "$tmp/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache")
  apt-get -qq "${opts[@]}" update
  candidate=$(apt-cache "${opts[@]}" policy docker-compose | sed -n 's/^ *Candidate: *//p')
  ;;
esac
case "$candidate" in
2.* | [3-9].*) ;;
*) echo "compose-v2: no Compose v2 docker-compose package found (candidate: ${candidate:-none})" >&2; exit 1 ;;
esac
(cd "$tmp" && apt-get -qq -o APT::Sandbox::User=root "${opts[@]}" download "docker-compose=$candidate")
dpkg -x "$tmp"/docker-compose_*.deb "$tmp/x"
install -D -m 0755 "$tmp/x$plugin" "$plugin"
is_v2 || { echo "compose-v2: installed $plugin, but docker compose version does not answer with a v2" >&2; exit 1; }
docker compose version
