#!/usr/bin/env bash
# Call rate with zero call length, side by side with SIPp, on loopback UDP (or TCP):
#   SIPp UAC → SIPp UAS   and   sipmeter UAC → SIPp UAS
# At each target rate both generators place CALLS calls (INVITE/100/180/200/ACK/BYE/200)
# against a fresh SIPp UAS. Prints the rate reached, failed calls, the generator's CPU
# seconds (user+sys), CPU per call (and its user and system parts) and peak RSS. Measures;
# never fails on a figure.
#
#   benches/load/cps.sh [CALLS] RATE1 RATE2 …      (default: 5000 calls at 200 500 1000 2000/s)
# Needs sipp (Debian sip-tester) and /usr/bin/time; builds sipmeter in release mode, or
# measures the binary SIPMETER_BIN names (to compare two builds). SIPMETER_WRAP prefixes
# sipmeter's command, e.g. SIPMETER_WRAP="strace -c -f -o /tmp/sc" counts its syscalls
# (its figures then include strace's overhead), and SIPMETER_WRAP="valgrind --tool=callgrind
# --callgrind-out-file=/tmp/cg" with `2000 200` (a rate valgrind keeps up with) counts the
# instructions of a whole run, repeatable where the machine's timings are not (compare two
# builds by `callgrind_annotate --inclusive=yes` on agent::engine::Shard::run). CPS_PERF=1 wraps it in `perf stat` and
# prints its task-clock, context switches and page faults per call. Each line ends with the SIPp UAS's
# own CPU per call (read from /proc before it is stopped) and the load average. Only the
# SIPp UAS this script started are stopped (by PID), never other runs'.
# CPS_UAS_BUFF=BYTES gives the SIPp UAS that socket buffer size (-buff_size; SIPp's default
# is 65535, which a burst of ~28 loopback datagrams fills); CPS_RCVBUF=BYTES asks that
# SO_RCVBUF for sipmeter's socket (udp_recv_buffer). Both unset: the defaults, as before.
# CPS_NO_SIPP_UAC=1 runs sipmeter only, CPS_NO_SIPMETER=1 SIPp's UAC only. Which socket
# dropped datagrams (SIPp's UAS or sipmeter's): run benches/load/udpdrops.py beside it.
# CPS_FLOOR=1 adds a third line per rate: the floor (crates/agent/examples/cps_floor.rs), the
# caller's datagrams with sipmeter's socket handling and no SIP work, measured the same way
# (perf stat with CPS_PERF=1): the kernel's and a minimal loop's CPU per call.
# CPS_TRANSPORT=tcp runs every side over TCP instead: SIPp with `-t t1` (one connection, as a
# trunk), sipmeter with `transport = "tcp"` and `connections = "shared"` (one connection per
# shard, the same shape). The floor is UDP only.
set -euo pipefail
cd "$(dirname "$0")/../.."
CALLS=${1:-5000}
shift || true
RATES=("$@")
((${#RATES[@]})) || RATES=(200 500 1000 2000)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sipmeter/target}
if [[ -n ${SIPMETER_BIN:-} ]]; then
  BIN=$SIPMETER_BIN
else
  cargo build --release -q -p sipmeter
  BIN=$CARGO_TARGET_DIR/release/sipmeter
fi
FLOOR_BIN=$CARGO_TARGET_DIR/release/examples/cps_floor
[[ -z ${CPS_FLOOR:-} ]] || cargo build --release -q -p agent --example cps_floor
TRANSPORT=${CPS_TRANSPORT:-udp}
case $TRANSPORT in
  udp) SIPP_T=() ; TOML_T= ;;
  tcp) SIPP_T=(-t t1) ; TOML_T=$'transport = "tcp"\nconnections = "shared"' ;;
  *) echo "CPS_TRANSPORT: udp or tcp, not $TRANSPORT" >&2; exit 2 ;;
esac
[[ -z ${CPS_FLOOR:-} || $TRANSPORT == udp ]] || { echo "CPS_FLOOR: UDP only" >&2; exit 2; }
WORK=$(mktemp -d)
UAS_PID=
# CPS_KEEP=1 keeps the last run's files (config, report, SIPp's statistics) and says where.
trap '{ [[ -z $UAS_PID ]] || kill "$UAS_PID" 2>/dev/null; } || true; if [[ -n ${CPS_KEEP:-} ]]; then echo "files kept in $WORK"; else rm -rf "$WORK"; fi' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# sipp -bg prints "Background mode - PID=[1234]".
start_uas() {
  UAS_PID=$(sipp -sn uas -i 127.0.0.1 -p "$1" "${SIPP_T[@]}" ${CPS_UAS_BUFF:+-buff_size "$CPS_UAS_BUFF"} -nostdin -bg 2>&1 | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p' || true)
  sleep 0.5
}
# The UAS's CPU seconds so far (utime + stime of /proc/PID/stat), into UAS_CPU.
uas_cpu() {
  UAS_CPU=0
  [[ -n $UAS_PID && -r /proc/$UAS_PID/stat ]] || return 0
  UAS_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$UAS_PID/stat")
}
stop_uas() { uas_cpu; { [[ -z $UAS_PID ]] || kill "$UAS_PID" 2>/dev/null; } || true; UAS_PID=; sleep 0.2; }
times() { tail -1 "$1"; }   # /usr/bin/time's last line: wall user sys maxrss

report() { # name rate wall user sys rss calls failed
  awk -v n="$1" -v t="$2" -v w="$3" -v u="$4" -v s="$5" -v r="$6" -v c="$7" -v f="$8" -v uas="$UAS_CPU" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
    cpu = u + s
    printf "%-24s target %5d/s  %6d calls in %6.2f s = %6.0f calls/s  failed %5d (%.2f %%)  CPU %6.2f s = %6.1f µs/call (user %.1f + sys %.1f)  RSS %6.1f MB  UAS %5.1f µs/call  load %s\n",
      n, t, c, w, c / w, f, 100 * f / c, cpu, cpu / c * 1e6, u / c * 1e6, s / c * 1e6, r / 1024, uas / c * 1e6, load }'
}

# perf stat's CSV (FILE) per call (CALLS): task-clock and context switches.
perf_report() {
  awk -F, -v c="$2" '$3 ~ /task-clock/ { t = $1 } $3 ~ /context-switches/ { cs = $1 } $3 ~ /page-faults/ { pf = $1 }
    END { printf "%-24s perf stat: task-clock %.0f ms = %.1f µs/call, %d context switches = %.2f per call, %.2f page faults per call\n", "", t, t * 1000 / c, cs, cs / c, pf / c }' "$1"
}

echo "== $CALLS calls per rate, zero call length, loopback ${TRANSPORT^^} ($(nproc) cores), SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1)"
for RATE in "${RATES[@]}"; do
  # CPS_NO_SIPP_UAC=1 skips the SIPp UAC run (when only two sipmeter builds are compared).
  if [[ -z ${CPS_NO_SIPP_UAC:-} ]]; then
  PORT=$(free_port); start_uas "$PORT"
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/sipp.time" \
    sipp -sn uac 127.0.0.1:"$PORT" -i 127.0.0.1 "${SIPP_T[@]}" -r "$RATE" -l 5000 -m "$CALLS" -d 0 -nostdin \
    -trace_stat -stf "$WORK/sipp.csv" >/dev/null 2>&1 || true
  stop_uas "$PORT"
  read -r W U S R <<< "$(times "$WORK/sipp.time")"
  FAILED=$(awk -F';' 'NR==1 { for (i = 1; i <= NF; i++) if ($i == "FailedCall(C)") c = i } END { print $c + 0 }' "$WORK/sipp.csv")
  report "SIPp UAC → SIPp UAS" "$RATE" "$W" "$U" "$S" "$R" "$CALLS" "$FAILED"
  fi
  if [[ -n ${CPS_FLOOR:-} ]]; then
    PORT=$(free_port); start_uas "$PORT"
    FWRAP=
    [[ -z ${CPS_PERF:-} ]] || FWRAP="perf stat -x, -o $WORK/fperf.csv -e task-clock,context-switches,page-faults"
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/floor.time" \
      $FWRAP "$FLOOR_BIN" "127.0.0.1:$PORT" "$CALLS" "$RATE" > "$WORK/floor.out" 2>&1 || true
    stop_uas "$PORT"
    read -r W U S R <<< "$(times "$WORK/floor.time")"
    FDONE=$(sed -n 's/.* \([0-9]*\) done.*/\1/p' "$WORK/floor.out")
    report "floor UAC → SIPp UAS" "$RATE" "$W" "$U" "$S" "$R" "$CALLS" "$((CALLS - ${FDONE:-0}))"
    printf '%-24s %s\n' "" "$(cat "$WORK/floor.out")"
    if [[ -n ${CPS_PERF:-} ]]; then
      perf_report "$WORK/fperf.csv" "$CALLS"
    fi
  fi
  # CPS_NO_SIPMETER=1 skips sipmeter's run (to find SIPp's own highest rate).
  [[ -z ${CPS_NO_SIPMETER:-} ]] || continue

  PORT=$(free_port); start_uas "$PORT"
  ENDPOINTS=$(( RATE < 100 ? 100 : RATE ))
  PER=$(( (CALLS + ENDPOINTS - 1) / ENDPOINTS ))
  cat > "$WORK/cps.toml" <<TOML
name = "cps bench"
duration = "0s"
cps = "$RATE/s"
time_limit = "600s"
[[registrar]]
id = "sipp"
domain = "127.0.0.1"
port = $PORT
register = false
$TOML_T
${CPS_RCVBUF:+udp_recv_buffer = $CPS_RCVBUF}
[[group]]
name = "caller"
endpoints = $ENDPOINTS
registrar = "sipp"
call = "sip:service@127.0.0.1:$PORT"
calls = $PER
pause = "0s"
media = false
[pass]
min_success = 0
TOML
  WRAP=${SIPMETER_WRAP:-}
  [[ -z ${CPS_PERF:-} ]] || WRAP="perf stat -x, -o $WORK/perf.csv -e task-clock,context-switches,page-faults"
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/sipmeter.time" \
    $WRAP "$BIN" run --quiet --workers 1 --report "$WORK/report.json" "$WORK/cps.toml" > "$WORK/sipmeter.out" 2>&1 || true
  stop_uas "$PORT"
  read -r W U S R <<< "$(times "$WORK/sipmeter.time")"
  read -r OK ATT LATE DIALS <<< "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["calls_answered"], s["calls_attempted"], s["late_timers"], round(s.get("offered_cps") or 0))' "$WORK/report.json")"
  report "sipmeter UAC → SIPp UAS" "$RATE" "$W" "$U" "$S" "$R" "$ATT" "$((ATT - OK))"
  # The rate above counts the whole run (start-up and report included), as SIPp's does;
  # this is the rate the calls were dialled at, first dial to last.
  printf '%-24s dialled at %d calls/s\n' "" "$DIALS"
  if [[ -n ${CPS_PERF:-} ]]; then
    perf_report "$WORK/perf.csv" "$ATT"
  fi
done
echo "(sipmeter: one shard, RATE endpoints calling in turn under cps = RATE/s; wall time includes start-up)"
