#!/usr/bin/env bash
# Run the embedded default: a simulated 14-hall fleet with its daemons and
# live status.  Needs no servers.  Extra arguments go to `ems demo`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# An explicit (empty) extras argument: a bare `source` would hand this script's own arguments
# (e.g. --port 8081) to setup-venv.sh as pip extras.
source "$root/scripts/setup-venv.sh" ""
exec "$root/.venv/bin/ems" demo --config "$root/config/fleet.yaml" "$@"
