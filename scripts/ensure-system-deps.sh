#!/usr/bin/env bash
# Install the system packages the test suite runs for real (DESIGN.md §5) when they are
# missing. `make test` (and so `.ci/run`) runs this before pytest.
#
# Idempotent, and silent and quick when everything is already installed. It only installs
# packages: it starts no server and creates no database cluster (the tests start their own,
# see tests/pg.py). Needs root to install; without root it prints the command and fails.
#
# One pair of functions per component: `have_<component>` detects it (no side effects, so
# tests can source this file and call it), `ensure_<component>` installs it when missing.
# To add a component, write that pair and call `ensure_<component>` from `main`.
#
# Overrides, for tests of the detection: PG_BIN_GLOB (default /usr/lib/postgresql/*/bin).
#
# What is made rather than installed (Azurite's npm folder, the Docker tests' base image) is
# also kept in a cache of the machine's, HEADWATER_TOOLS_CACHE (default /var/cache/headwater-tools
# as root, else ~/.cache/headwater-tools), like apt keeps its packages: a fresh clone on the
# same machine (CI's) takes it from there in a second instead of making it again (minutes).
# HEADWATER_TOOLS_CACHE= (empty) turns the cache off.

set -euo pipefail

PG_BIN_GLOB="${PG_BIN_GLOB:-/usr/lib/postgresql/*/bin}"

# The repository's root, by parameter expansion only (tests source this with a fake PATH).
_here="${BASH_SOURCE[0]%/*}"
[[ "$_here" == "${BASH_SOURCE[0]}" ]] && _here=.
REPO_ROOT="$(cd "$_here/.." && pwd)"

# --- apt machinery --------------------------------------------------------------------

_apt_updated=0

# apt_install PACKAGE... : `apt-get update` once per run, then install quietly.
apt_install() {
    if [[ $EUID -ne 0 ]]; then
        echo "ensure-system-deps: missing system package(s): $*" >&2
        echo "ensure-system-deps: install them as root, then run this again:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y $*" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-system-deps: missing system package(s): $*, and there is no apt-get here;" \
            "install their equivalents with this system's package manager" >&2
        exit 1
    fi
    echo "ensure-system-deps: installing $* ..." >&2
    # The lock timeout lets two runs at once (two checkouts testing) wait for each other.
    if [[ $_apt_updated -eq 0 ]]; then
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

# --- the machine's cache of made tools --------------------------------------------------

if [[ -z "${HEADWATER_TOOLS_CACHE+set}" ]]; then
    if [[ $EUID -eq 0 ]]; then
        HEADWATER_TOOLS_CACHE=/var/cache/headwater-tools
    else
        HEADWATER_TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/headwater-tools"
    fi
fi

# from_cache NAME DEST : copy the cached NAME (a file or a folder) to DEST; fails when not cached.
from_cache() {
    local cached="$HEADWATER_TOOLS_CACHE/$1" dest="$2"
    [[ -n "$HEADWATER_TOOLS_CACHE" && -e "$cached" ]] || return 1
    mkdir -p "${dest%/*}"
    rm -rf "$dest.tmp"
    cp -a --reflink=auto "$cached" "$dest.tmp" && rm -rf "$dest" && mv "$dest.tmp" "$dest" \
        && echo "ensure-system-deps: took $dest from the cache $cached" >&2
}

# to_cache NAME SOURCE : keep a copy of SOURCE as NAME in the cache unless it is there (best
# effort: a cache that can't be written only costs the next clone the time to make it again).
to_cache() {
    local cached="$HEADWATER_TOOLS_CACHE/$1" source="$2"
    [[ -n "$HEADWATER_TOOLS_CACHE" && ! -e "$cached" ]] || return 0
    { mkdir -p "$HEADWATER_TOOLS_CACHE" && rm -rf "$cached.tmp" \
        && cp -a --reflink=auto "$source" "$cached.tmp" && rm -rf "$cached" && mv "$cached.tmp" "$cached"; } \
        2>/dev/null || echo "ensure-system-deps: could not keep $source in the cache $HEADWATER_TOOLS_CACHE" >&2
}

# --- components -----------------------------------------------------------------------

# PostgreSQL server binaries: initdb under /usr/lib/postgresql/<version>/bin (Debian) or on PATH.
# Debian's postinst may create and start a `main` cluster on port 5432; it is left alone,
# since the tests start their own cluster on a free port.
have_postgresql() {
    local dir
    for dir in $PG_BIN_GLOB; do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && return 0
    done
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}

ensure_postgresql() {
    have_postgresql && return 0
    apt_install postgresql
    if ! have_postgresql; then
        echo "ensure-system-deps: installed postgresql, but still found no initdb and pg_ctl" \
            "in $PG_BIN_GLOB or on PATH" >&2
        exit 1
    fi
}

# Azurite (the Azure Storage emulator) for tests/storage/test_azure.py: an npm package kept
# in .tools/azurite under the repo root (git-ignored), not a system package, so no root needed.
AZURITE_DIR="${AZURITE_DIR:-$REPO_ROOT/.tools/azurite}"

have_azurite() {
    [[ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]]
}

# The cache entry's name says the version asked for: a change to it makes a new entry.
AZURITE_CACHE_NAME=azurite-3

ensure_azurite() {
    if have_azurite; then
        to_cache "$AZURITE_CACHE_NAME" "$AZURITE_DIR"  # a checkout made before the cache fills it
        return 0
    fi
    from_cache "$AZURITE_CACHE_NAME" "$AZURITE_DIR" && have_azurite && return 0
    if ! command -v npm >/dev/null 2>&1; then
        echo "ensure-system-deps: Azurite needs npm (Node.js); install Node.js, then run this again" >&2
        exit 1
    fi
    echo "ensure-system-deps: installing azurite@3 into $AZURITE_DIR ..." >&2
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --silent azurite@3 >/dev/null
    if ! have_azurite; then
        echo "ensure-system-deps: installed azurite@3, but found no $AZURITE_DIR/node_modules/.bin/azurite-blob" >&2
        exit 1
    fi
    to_cache "$AZURITE_CACHE_NAME" "$AZURITE_DIR"
}

# git: the command Git storage clones with (tests/storage/test_git.py also runs `git daemon`).
have_git() {
    command -v git >/dev/null 2>&1
}

ensure_git() {
    have_git && return 0
    apt_install git
    if ! have_git; then
        echo "ensure-system-deps: installed git, but still found no git on PATH" >&2
        exit 1
    fi
}


# Docker Engine, a local registry and debootstrap, for the Docker storage, DockerEnvironment
# and DockerAgent tests. The tests start their own dockerd (tests/dockerd.py); nothing here
# starts a daemon.
have_docker() {
    command -v dockerd >/dev/null 2>&1 && command -v docker-registry >/dev/null 2>&1 \
        && command -v debootstrap >/dev/null 2>&1
}

ensure_docker() {
    have_docker && return 0
    apt_install docker.io docker-registry debootstrap
    if ! have_docker; then
        echo "ensure-system-deps: installed docker.io, docker-registry and debootstrap, but still" \
            "found no dockerd, docker-registry or debootstrap on PATH" >&2
        exit 1
    fi
}

# The base image of the Docker tests: no registry can be pulled from here, so a Debian
# bookworm root file system with Python 3 and pip is made with debootstrap once and kept as
# a tarball in .tools/docker (git-ignored); the tests `docker import` it into their daemon.
# pip may install into its system Python (the image is single-purpose, like python:*-slim).
BASE_IMAGE_TAR="${BASE_IMAGE_TAR:-$REPO_ROOT/.tools/docker/base-bookworm-python3.tar}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

BASE_IMAGE_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
# The cache entry's name: change its version with the packages (or the suite), so a new one is made.
BASE_IMAGE_CACHE_NAME=base-bookworm-python3-v1.tar

have_base_image() {
    [[ -s "$BASE_IMAGE_TAR" ]]
}

ensure_base_image() {
    if have_base_image; then
        to_cache "$BASE_IMAGE_CACHE_NAME" "$BASE_IMAGE_TAR"  # a checkout made before the cache fills it
        return 0
    fi
    from_cache "$BASE_IMAGE_CACHE_NAME" "$BASE_IMAGE_TAR" && have_base_image && return 0
    if [[ $EUID -ne 0 ]]; then
        echo "ensure-system-deps: making the Docker tests' base image needs root (debootstrap);" \
            "run this script as root" >&2
        exit 1
    fi
    local dir root
    dir="${BASE_IMAGE_TAR%/*}"
    mkdir -p "$dir"
    root="$(mktemp -d "$dir/rootfs.XXXXXX")"
    echo "ensure-system-deps: making the Docker tests' base image with debootstrap (about 2 minutes) ..." >&2
    if ! debootstrap --variant=minbase --include="$BASE_IMAGE_PACKAGES" \
            bookworm "$root" "$DEBIAN_MIRROR" >"$dir/debootstrap.log" 2>&1; then
        echo "ensure-system-deps: debootstrap failed; its log is $dir/debootstrap.log" >&2
        rm -rf "$root"
        exit 1
    fi
    rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -cf "$BASE_IMAGE_TAR.tmp" .
    mv "$BASE_IMAGE_TAR.tmp" "$BASE_IMAGE_TAR"
    rm -rf "$root"
    to_cache "$BASE_IMAGE_CACHE_NAME" "$BASE_IMAGE_TAR"
}

# Chromium, the browser the web UI's tests drive with Playwright (tests/ui/, executable_path=/usr/bin/chromium).
have_chromium() {
    [[ -x /usr/bin/chromium ]]
}

ensure_chromium() {
    have_chromium && return 0
    apt_install chromium
    if ! have_chromium; then
        echo "ensure-system-deps: installed chromium, but found no /usr/bin/chromium" >&2
        exit 1
    fi
}

# --------------------------------------------------------------------------------------

main() {
    ensure_git
    ensure_postgresql
    ensure_azurite
    ensure_docker
    ensure_base_image
    ensure_chromium
}

# Run only when executed, not when sourced (tests source it to call have_* directly).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
