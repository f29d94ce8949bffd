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

set -euo pipefail

PG_BIN_GLOB="${PG_BIN_GLOB:-/usr/lib/postgresql/*/bin}"

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
AZURITE_DIR="${AZURITE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/azurite}"

have_azurite() {
    [[ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]]
}

ensure_azurite() {
    have_azurite && return 0
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

# --------------------------------------------------------------------------------------

main() {
    ensure_git
    ensure_postgresql
    ensure_azurite
}

# Run only when executed, not when sourced (tests source it to call have_* directly).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
