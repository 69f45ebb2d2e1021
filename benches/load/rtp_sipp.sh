#!/usr/bin/env bash
# Concurrent G.711 calls with RTP both ways against SIPp's RTP echo, on loopback:
#   N sipmeter callers (no registration) → one SIPp UAS (`-sn uas -rtp_echo`)
# Every call is up for DURATION, all at once (ramp 500/s). SIPp answers PCMU and sends every
# RTP datagram back to where it came from, so each caller measures its own stream after the
# round trip through SIPp. For each N prints packets sent/received, loss, mean/min MOS, mean/max
# jitter, the generator's send-timing p99 and late timers, and the cores sipmeter and SIPp
# each used while all calls were up (from /proc/PID/stat), sipmeter's peak RSS per call, and
# OVERLOADED when sipmeter flagged itself, and the datagrams the kernel dropped at SIPp's echo
# socket because SIPp did not read them in time ("SIPp drop"). Loss here is the sum of both directions through
# SIPp's one echo socket: when SIPp's echo falls behind, the kernel drops at its socket.
# Measures; never fails on a figure.
#
#   benches/load/rtp_sipp.sh [DURATION_S] N1 N2 …      (default: 20 s, 250 500 1000 2000)
# Needs sipp (Debian sip-tester). SIPMETER_BIN=path runs a given build instead of building.
# SIPMETER_TIMELINE=DIR: each N's shard loop timelines go to DIR/N (read them with
# benches/load/timeline.py DIR/N); SIPMETER_MEDIA_RT=PRIORITY runs the shards under SCHED_FIFO
# (needs root or RLIMIT_RTPRIO; docs/notes-rtpp99.md). Both are off by default.
# SIPMETER_MEDIA_SLICE_US / SIPMETER_MEDIA_BATCH: see sched_note below.
set -euo pipefail
TIMELINE=${SIPMETER_TIMELINE:-}
cd "$(dirname "$0")/../.."
DURATION=${1:-20}
shift || true
COUNTS=("$@")
((${#COUNTS[@]})) || COUNTS=(250 500 1000 2000)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sipmeter/target}
[[ -n ${SIPMETER_BIN:-} ]] || cargo build --release -q -p sipmeter
BIN=${SIPMETER_BIN:-$CARGO_TARGET_DIR/release/sipmeter}
WORK=$(mktemp -d)
SIPP_PID=
trap '[[ -n $SIPP_PID ]] && kill "$SIPP_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo; }
# Datagrams the kernel dropped at the UDP socket bound to 127.0.0.1:PORT (its receive buffer
# was full): the last column of /proc/net/udp.
udp_drops() { awk -v p="$(printf '0100007F:%04X' "$1")" '$2 == p { print $NF }' /proc/net/udp | head -1; }

# The shards' scheduling as asked (docs/notes-rtpsched.md): SCHED_FIFO, else a short slice
# (default 100 µs; SIPMETER_MEDIA_SLICE_US=0: the kernel's), and the collector and printer
# threads under SCHED_BATCH at nice 10 (SIPMETER_MEDIA_BATCH=0: not; =on: nice kept; =N:
# nice N). What the kernel refused is printed under each run's row.
sched_note() {
  local s=${SIPMETER_MEDIA_SLICE_US:-100} b=${SIPMETER_MEDIA_BATCH:-}
  [[ $s == 0 || $s == off ]] && s="kernel's" || s="$s µs"
  case $b in 0|off) b="normal" ;; on) b="SCHED_BATCH" ;; "") b="SCHED_BATCH nice 10" ;; *) b="SCHED_BATCH nice $b" ;; esac
  echo "shard slice $s, collector/printer $b"
}
echo "== G.711 calls with RTP both ways, ${DURATION}s each, sipmeter callers → SIPp UAS -rtp_echo ($(nproc) cores, SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1))${SIPMETER_MEDIA_RT:+, shards SCHED_FIFO $SIPMETER_MEDIA_RT}; $(sched_note)"
printf "%7s %12s %12s %8s %6s %6s %9s %9s %7s %9s %8s %8s %10s %8s  %s\n" calls tx_packets rx_packets "loss %" MOS minMOS "jitter" "max jit" late "send p99" "our cor" "SIPp cor" "SIPp drop" "KB/call" flag
for N in "${COUNTS[@]}"; do
  if [[ -n $TIMELINE ]]; then mkdir -p "$TIMELINE/$N"; export SIPMETER_TIMELINE="$TIMELINE/$N"; fi
  PORT=$(free_port)
  # SIPp's media ports (it uses MPORT and MPORT + 2), below the ephemeral range our calls'
  # sockets come from.
  MPORT=$(( 20000 + 4 * (RANDOM % 2500) ))
  sipp -sn uas -i 127.0.0.1 -p "$PORT" -mi 127.0.0.1 -mp "$MPORT" -rtp_echo -nostdin \
    -m "$N" -timeout "$((DURATION + 150))s" > "$WORK/sipp.out" 2>&1 &
  SIPP_PID=$!
  sleep 0.5
  cat > "$WORK/rtp.toml" <<TOML
name = "rtp echo bench $N"
duration = "${DURATION}s"
ramp = "500/s"
time_limit = "$((DURATION + 120))s"
[[registrar]]
id = "sipp"
domain = "127.0.0.1"
port = $PORT
register = false
[[group]]
name = "caller"
endpoints = $N
registrar = "sipp"
call = "sip:service@127.0.0.1:$PORT"
codecs = ["PCMU"]
[pass]
min_success = 0
TOML
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
    "$BIN" run --quiet --report "$WORK/report.json" "$WORK/rtp.toml" > "$WORK/out" 2>&1 &
  TPID=$!
  # Every call is up from about N/500 s (the ramp) to DURATION s; measure inside that
  # window when it is at least 2 s long.
  FROM=$(( N / 500 + 2 )); TO=$(( DURATION - 1 ))
  CORES=-; SCORES=-
  if (( TO - FROM >= 2 )); then
    sleep "$FROM"
    PID=$(pgrep -P "$TPID" | head -1 || true)
    if [[ -n $PID ]]; then
      T0=$(cpu_ticks "$PID"); S0=$(cpu_ticks "$SIPP_PID")
      sleep $(( TO - FROM ))
      T1=$(cpu_ticks "$PID"); S1=$(cpu_ticks "$SIPP_PID")
      HZ=$(getconf CLK_TCK); SPAN=$(( TO - FROM ))
      [[ -n $T0 && -n $T1 ]] && CORES=$(python3 -c "print(f'{($T1 - $T0) / $HZ / $SPAN:.2f}')")
      [[ -n $S0 && -n $S1 ]] && SCORES=$(python3 -c "print(f'{($S1 - $S0) / $HZ / $SPAN:.2f}')")
    fi
  fi
  wait "$TPID" || true
  if [[ -n ${RTP_KEEP:-} ]]; then
    mkdir -p "$RTP_KEEP" && cp "$WORK/out" "$RTP_KEEP/sipp-$N.out" && cp "$WORK/report.json" "$RTP_KEEP/sipp-$N.json"
  fi
  grep -E 'refused|not kept' "$WORK/out" | sed 's/^/  /' || true
  if [[ -n ${SIPMETER_STALL_MS:-} ]]; then
    grep '^stalls shard' "$WORK/out" | sed 's/^/  /' || true
  fi
  DROPS=$(udp_drops "$MPORT"); DROPS=${DROPS:--}
  kill "$SIPP_PID" 2>/dev/null || true
  wait "$SIPP_PID" 2>/dev/null || true
  SIPP_PID=
  read -r W U S R < "$WORK/time"
  python3 - "$WORK/report.json" "$N" "$R" "$CORES" "$SCORES" "$DROPS" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])); n = int(sys.argv[2])
r, cores, scores, drops = float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
sys.dont_write_bytecode = True
sys.path.insert(0, "benches/load")
from rtpfig import media_figures
f = media_figures(v)
tx, rx, loss, mos, minmos = f["tx"], f["rx"], f["loss_pct"], f["mos"], f["min_mos"]
jit, maxjit = f["jitter_ms"], f["max_jitter_ms"]
sm = v["summary"]
p99 = sm.get("send_jitter_p99_ms")
p99s = f"{p99:7.3f}ms" if p99 is not None else "        -"
flag = "OVERLOADED" if sm["generator_overloaded"] else ""
if f["unrated"]:
    flag += f" unrated {f['unrated']}"
if sm.get("calls_answered", n) < n:
    flag += f" answered {sm.get('calls_answered')}/{n}"
print(f"{n:7d} {tx:12d} {rx:12d} {loss:8.3f} {mos:6.2f} {minmos:6.2f} {jit:7.2f}ms {maxjit:7.2f}ms {sm['late_timers']:7d} {p99s} {cores:>8} {scores:>8} {drops:>10} {r/n:8.1f}  {flag}")
PY
done
echo "(loss: RFC 3550 A.3 on the echoed stream, i.e. both directions through SIPp; cores: while all calls are up)"
