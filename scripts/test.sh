#!/usr/bin/env bash
# Run the test suite: installs Debian's real servers the tests start
# (Mosquitto, InfluxDB 1.x, VictoriaMetrics, mbpoll, Chromium) and the Python
# test dependencies, then runs pytest.  Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
packages="mosquitto mbpoll influxdb victoria-metrics chromium chromium-driver systemd fonts-noto-cjk"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing Debian packages:$missing"
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
source "$root/scripts/setup-venv.sh" test
exec "$root/.venv/bin/python" -m pytest "$@"
