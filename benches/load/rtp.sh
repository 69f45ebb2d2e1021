#!/usr/bin/env bash
# Concurrent G.711 calls with RTP both ways, sipmeter ↔ sipmeter through the built-in
# registrar on loopback: N callers call N callees, every call up for DURATION, all at once.
# RTP_CALL=echo (or tone): N callers call the built-in registrar's service number instead
# (`call = "builtin:echo"`): the registrar itself reflects (plays) the media, so the callers'
# figures measure the registrar's service media (echo: the whole round trip).
# For each N prints packets sent/received, loss, mean/min MOS, mean/max jitter, the
# generator's own timing (late timers; RTP send-timing jitter p99 = how late packets left
# against their schedule), CPU seconds (whole run) and cores while all calls are up, peak RSS and RSS per call,
# the built-in registrar thread's cores while all calls are up ("reg cores": the echo/tone
# media with RTP_CALL), and OVERLOADED when the generator flagged itself. Measures; never fails on a figure.
#
#   benches/load/rtp.sh [DURATION_S] N1 N2 …      (default: 20 s, 250 500 1000 1500)
#   RTP_CALL=echo benches/load/rtp.sh 20 500 1000 2000 3000     (the registrar's echo)
#
# SIPMETER_STALL_MS=N: the shards print every loop turn that stalled longer than N ms
# (docs/media.md); RTP_KEEP=DIR keeps each run's output (DIR/rtp-N.out) and report.
# SIPMETER_TIMELINE=DIR: each N's shard loop timelines go to DIR/N (read them with
# benches/load/timeline.py DIR/N); SIPMETER_MEDIA_RT=PRIORITY runs the shards under SCHED_FIFO
# (needs root or RLIMIT_RTPRIO; docs/notes-rtpp99.md). Both are off by default.
# SIPMETER_MEDIA_SLICE_US / SIPMETER_MEDIA_BATCH: see sched_note below.
set -euo pipefail
TIMELINE=${SIPMETER_TIMELINE:-}
SERVICE=${RTP_CALL:-}
case $SERVICE in ""|echo|tone) ;; *) echo "RTP_CALL=$SERVICE: want echo or tone" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../.."
DURATION=${1:-20}
shift || true
COUNTS=("$@")
((${#COUNTS[@]})) || COUNTS=(250 500 1000 1500)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sipmeter/target}
[[ -n ${SIPMETER_BIN:-} ]] || cargo build --release -q -p sipmeter
BIN=${SIPMETER_BIN:-$CARGO_TARGET_DIR/release/sipmeter}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true

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
if [[ -n $SERVICE ]]; then PEER="sipmeter → the built-in registrar's $SERVICE"; else PEER="sipmeter ↔ sipmeter via the built-in registrar"; fi
echo "== G.711 calls with RTP both ways, ${DURATION}s each, $PEER ($(nproc) cores)${SIPMETER_MEDIA_RT:+, shards SCHED_FIFO $SIPMETER_MEDIA_RT}; $(sched_note)"
printf "%7s %7s %12s %12s %8s %6s %6s %9s %9s %7s %9s %8s %6s %9s %8s %8s  %s\n" calls streams tx_packets rx_packets "loss %" MOS minMOS "jitter" "max jit" late "send p99" "CPU s" cores "reg cores" "RSS MB" "KB/call" flag
# CPU ticks of the process's `registrar` thread(s) (the built-in registrar's runtime).
reg_ticks() {
  cat /proc/"$1"/task/*/stat 2>/dev/null | awk '$2 == "(registrar)" { t += $14 + $15; n++ } END { if (n) print t }'
}
for N in "${COUNTS[@]}"; do
  if [[ -n $TIMELINE ]]; then mkdir -p "$TIMELINE/$N"; export SIPMETER_TIMELINE="$TIMELINE/$N"; fi
  if [[ -n $SERVICE ]]; then
    # One group: the callers; the registrar answers. All calls overlap from ≈ N/500 s on.
    STREAMS=$N CALLEES="" TARGET="builtin:$SERVICE" UP=$(( N / 500 + 2 ))
  else
    STREAMS=$(( 2 * N )) TARGET="group:callee" UP=$(( 2 * N / 500 + 2 ))
    CALLEES="[[group]]
name = \"callee\"
endpoints = $N
registrar = \"builtin\"
role = \"answer\""
  fi
  cat > "$WORK/rtp.toml" <<TOML
name = "rtp bench $N"
duration = "${DURATION}s"
ramp = "500/s"
time_limit = "$((DURATION + 120))s"
register_expires = 600
[[registrar]]
id = "builtin"
kind = "builtin"
$CALLEES
[[group]]
name = "caller"
endpoints = $N
registrar = "builtin"
call = "$TARGET"
codecs = ["PCMU"]
[pass]
min_success = 0
TOML
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
    "$BIN" run --quiet --report "$WORK/report.json" "$WORK/rtp.toml" > "$WORK/out" 2>&1 &
  TPID=$!
  # Steady-state cores: CPU used while every call is up. Callees register first (N at the
  # ramp), then callers start and dial (N more), so all N calls overlap from about 2N/500 s
  # (N/500 s with RTP_CALL: no callees) to N/500 + DURATION s; measure inside that window
  # when it is at least 2 s long. The registrar's thread (named `registrar`) is also
  # measured alone.
  FROM=$UP; TO=$(( N / 500 + DURATION - 1 ))
  CORES=- REGCORES=-
  if (( TO - FROM >= 2 )); then
    sleep "$FROM"
    PID=$(pgrep -P "$TPID" | head -1 || true)
    if [[ -n $PID ]]; then
      T0=$(awk '{print $14 + $15}' "/proc/$PID/stat" 2>/dev/null || echo)
      R0=$(reg_ticks "$PID")
      sleep $(( TO - FROM ))
      T1=$(awk '{print $14 + $15}' "/proc/$PID/stat" 2>/dev/null || echo)
      R1=$(reg_ticks "$PID")
      [[ -n $T0 && -n $T1 ]] && CORES=$(python3 -c "print(f'{($T1 - $T0) / $(getconf CLK_TCK) / $(( TO - FROM )):.2f}')")
      [[ -n $R0 && -n $R1 ]] && REGCORES=$(python3 -c "print(f'{($R1 - $R0) / $(getconf CLK_TCK) / $(( TO - FROM )):.2f}')")
    fi
  fi
  wait "$TPID" || true
  if [[ -n ${RTP_KEEP:-} ]]; then
    mkdir -p "$RTP_KEEP" && cp "$WORK/out" "$RTP_KEEP/rtp-$N.out" && cp "$WORK/report.json" "$RTP_KEEP/rtp-$N.json"
  fi
  grep -E 'refused|not kept' "$WORK/out" | sed 's/^/  /' || true
  if [[ -n ${SIPMETER_STALL_MS:-} ]]; then
    grep '^stalls shard' "$WORK/out" | sed 's/^/  /' || true
  fi
  read -r W U S R < "$WORK/time"
  python3 - "$WORK/report.json" "$N" "$U" "$S" "$R" "$CORES" "$STREAMS" "$REGCORES" <<'PY'
import json, sys
v = json.load(open(sys.argv[1])); n = int(sys.argv[2])
u, s, r, cores = float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
streams, regcores = int(sys.argv[7]), sys.argv[8]
sys.dont_write_bytecode = True
sys.path.insert(0, "benches/load")
from rtpfig import media_figures
f = media_figures(v)
tx, rx, loss, mos, minmos = f["tx"], f["rx"], f["loss_pct"], f["mos"], f["min_mos"]
jit, maxjit = f["jitter_ms"], f["max_jitter_ms"]
sm = v["summary"]
late = sm["late_timers"]
p99 = sm.get("send_jitter_p99_ms")
p99s = f"{p99:7.3f}ms" if p99 is not None else "        -"
flag = "OVERLOADED" if sm["generator_overloaded"] else ""
if f["unrated"]:
    flag += f" unrated {f['unrated']}"
if sm.get("calls_answered", n) < n:
    flag += f" answered {sm.get('calls_answered')}/{n}"
print(f"{n:7d} {streams:7d} {tx:12d} {rx:12d} {loss:8.3f} {mos:6.2f} {minmos:6.2f} {jit:7.2f}ms {maxjit:7.2f}ms {late:7d} {p99s} {u+s:8.1f} {cores:>6} {regcores:>9} {r/1024:8.1f} {r/n:8.1f}  {flag}")
PY
done
