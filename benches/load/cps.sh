#!/usr/bin/env bash
# Calls per second with zero call length, side by side with SIPp, on loopback:
#   sipmeter UAC → SIPp UAS   and   SIPp UAC → SIPp UAS
# Both generators place CALLS calls (INVITE/100/180/200/ACK/BYE/200) against the same kind of
# SIPp UAS. Prints wall time, calls per second, CPU seconds of the generator (user+sys), CPU
# per call, peak RSS, and the failed-call count. Measures; never fails on a figure.
#
#   benches/load/cps.sh [CALLS] [SIPMETER_ENDPOINTS]
# Needs sipp (Debian sip-tester) and /usr/bin/time; builds sipmeter in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
CALLS=${1:-20000}
ENDPOINTS=${2:-200}
PER_ENDPOINT=$(( (CALLS + ENDPOINTS - 1) / ENDPOINTS ))
CALLS=$(( PER_ENDPOINT * ENDPOINTS ))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sipmeter/target}
cargo build --release -q -p sipmeter
BIN=$CARGO_TARGET_DIR/release/sipmeter
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_uas() {
  local port=$1
  sipp -sn uas -i 127.0.0.1 -p "$port" -nostdin -bg >/dev/null 2>&1 || true
  # -bg forks; find the pid by port
  sleep 0.5
  pgrep -f "sipp -sn uas -i 127.0.0.1 -p $port" | head -1
}

report() { # name wall user sys rss calls failed
  awk -v n="$1" -v w="$2" -v u="$3" -v s="$4" -v r="$5" -v c="$6" -v f="$7" 'BEGIN {
    cpu = u + s
    printf "%-28s %7d calls  %6.2f s  %8.0f calls/s  CPU %6.2f s  %7.1f µs CPU/call  RSS %6.1f MB  failed %d\n",
      n, c, w, c / w, cpu, cpu / c * 1e6, r / 1024, f }'
}

echo "== $CALLS calls, zero call length, loopback UDP ($(nproc) cores)"

# 1. SIPp UAC → SIPp UAS, as fast as SIPp goes (rate far above what it reaches, 5000 in flight).
PORT=$(free_port)
UAS=$(start_uas "$PORT")
/usr/bin/time -f "%e %U %S %M" -o "$WORK/sipp.time" \
  sipp -sn uac 127.0.0.1:"$PORT" -i 127.0.0.1 -r 50000 -l 5000 -m "$CALLS" -d 0 -nostdin \
  -trace_stat -stf "$WORK/sipp.csv" >/dev/null 2>&1 || true
kill "$UAS" 2>/dev/null || true
read -r W U S R < "$WORK/sipp.time"
FAILED=$(awk -F';' 'NR==1 { for (i = 1; i <= NF; i++) if ($i == "FailedCall(C)") c = i } END { print $c + 0 }' "$WORK/sipp.csv" 2>/dev/null || echo "?")
report "SIPp UAC → SIPp UAS" "$W" "$U" "$S" "$R" "$CALLS" "${FAILED:-?}"

# 2. sipmeter UAC (ENDPOINTS endpoints, each calling PER_ENDPOINT times) → SIPp UAS.
PORT=$(free_port)
UAS=$(start_uas "$PORT")
cat > "$WORK/cps.toml" <<TOML
name = "cps bench"
duration = "0s"
time_limit = "300s"
[[registrar]]
id = "sipp"
domain = "127.0.0.1"
port = $PORT
register = false
[[group]]
name = "caller"
endpoints = $ENDPOINTS
registrar = "sipp"
call = "sip:service@127.0.0.1:$PORT"
calls = $PER_ENDPOINT
pause = "0s"
[pass]
min_success = 0
TOML
/usr/bin/time -f "%e %U %S %M" -o "$WORK/sipmeter.time" \
  "$BIN" run --quiet --workers 1 --report "$WORK/report.json" "$WORK/cps.toml" > "$WORK/sipmeter.out" 2>&1 || true
kill "$UAS" 2>/dev/null || true
read -r W U S R < "$WORK/sipmeter.time"
ANSWERED=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["calls_answered"], s["calls_attempted"], s.get("late_timers",0))' "$WORK/report.json")
read -r OK ATT LATE <<< "$ANSWERED"
report "sipmeter UAC → SIPp UAS" "$W" "$U" "$S" "$R" "$ATT" "$((ATT - OK))"
echo "   (sipmeter: $ENDPOINTS endpoints × $PER_ENDPOINT calls on 1 shard; late timers $LATE; the wall time includes start-up)"
