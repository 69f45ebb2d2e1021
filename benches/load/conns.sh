#!/usr/bin/env bash
# Memory and CPU per connection: N endpoints register over UDP, TCP, TLS, WS and WSS against the
# built-in registrar (in the same process, so both ends count), stay 2 s and un-register,
# ramp N/2 per second (all registered within 2 s). Prints wall time, peak RSS, CPU and the
# RSS per connection over the UDP run (each stream run minus the UDP run, divided by N), and
# the memory of one idle registered
# endpoint over UDP (a run of 5 N endpoints minus the run of N, divided by 4 N: the endpoint
# and its binding in the registrar, its report included; the process's fixed costs cancel).
# Measures; never fails on a figure.
#
#   benches/load/conns.sh [N]                 (default: 1000 endpoints)
#   SIPMETER_BIN=path benches/load/conns.sh   (a given binary, e.g. an older build, no build)
# Needs /usr/bin/time; builds sipmeter in release mode unless SIPMETER_BIN is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
if [[ -z ${SIPMETER_BIN:-} ]]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sipmeter/target}
  cargo build --release -q -p sipmeter
  SIPMETER_BIN=$CARGO_TARGET_DIR/release/sipmeter
fi
# Two descriptors per connection (both ends in this process), plus media and the rest.
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

declare -A RSS
echo "== $N endpoints register, stay 2 s, un-register; built-in registrar in the same process ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
for T in udp tcp tls ws wss udp5; do
  P=${T%5}
  M=$N
  [[ $T == udp5 ]] && M=$((5 * N))
  cat > "$WORK/$T.toml" <<TOML
name = "register over $P"
duration = "2s"
ramp = "$((M / 2))/s"
time_limit = "120s"
seed = 1
[[registrar]]
id = "builtin"
kind = "builtin"
transport = "$P"
[[group]]
name = "phones"
endpoints = $M
registrar = "builtin"
role = "register"
TOML
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/$T.time" \
    "$SIPMETER_BIN" run -q --report "$WORK/$T.json" "$WORK/$T.toml" >/dev/null 2>&1 || true
  read -r W U S R < <(tail -1 "$WORK/$T.time")
  RSS[$T]=$R
  python3 - "$WORK/$T.json" "$T" "$W" "$U" "$S" "$R" <<'PY'
import json, sys
path, t, w, u, s, r = sys.argv[1:]
try:
    d = json.load(open(path))
    summary = d.get("summary", d)
    ok = summary.get("outcomes", {}).get("SUCCESS", 0)
    n = summary.get("endpoints", 0)
    extra = f"SUCCESS {ok}/{n}  dropped sends {summary.get('dropped_sends', 0)}  late timers {summary.get('late_timers', 0)}"
except Exception as e:  # a failed run leaves no report
    extra = f"no report ({e})"
print(f"{t:4}  wall {float(w):5.2f} s  CPU {float(u) + float(s):5.2f} s  max RSS {int(r) / 1024:6.1f} MB  {extra}")
PY
done
for T in tcp tls ws wss; do
  awk -v t="$T" -v a="${RSS[$T]}" -v b="${RSS[udp]}" -v n="$N" \
    'BEGIN { printf "%s: %.1f KB per connection over UDP (both ends)\n", t, (a - b) / n }'
done
awk -v a="${RSS[udp5]}" -v b="${RSS[udp]}" -v n="$N" \
  'BEGIN { printf "udp: %.2f KB per idle registered endpoint (both ends: the endpoint and its binding)\n", (a - b) / (4 * n) }'
