#!/usr/bin/env bash
# Create .venv (if needed) and install the project into it, with extras "$1".
# Sourced by scripts/demo.sh and scripts/test.sh; pip is quiet when up to date.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
if [ ! -x "$root/.venv/bin/python" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
        # Debian splits venv support into its own package.
        sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    fi
    python3 -m venv "$root/.venv"
fi
stamp="$root/.venv/.installed-$(sha1sum "$root/pyproject.toml" | cut -c1-12)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
    "$root/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root${extras:+[$extras]}"
    touch "$stamp"
fi
