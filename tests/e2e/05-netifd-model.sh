#!/usr/bin/env bash
# Unit tests of the netifd/odhcpd model (tests/netifd-model): one test per rule, each
# citing the real-daemon observation it mirrors (shared/openwrt-fixtures). The lab
# tests of issue 11 (64, 68-70) trust this model, so it runs first. Uses the real uci
# tool (WGROAM_UCI_BIN, set by scripts/test.sh) and Debian's python3 and radvd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
if [ -z "${WGROAM_UCI_BIN:-}" ]; then
  WGROAM_UCI_BIN=$(bash "$root/tests/tools/build-uci.sh" | tail -n 1)
  export WGROAM_UCI_BIN
fi
/usr/bin/python3 "$root/tests/netifd-model/test_netifd_model.py" 2>&1
echo "PASS"
