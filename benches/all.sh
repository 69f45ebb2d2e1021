#!/usr/bin/env bash
# Every figure of the README's "Performance (measured)" section, in one run (~10 minutes on
# the 2-core machine the README quotes). Run it on a quiet machine: other work on the same
# cores moves every wall-clock figure here. Measures; never fails on a figure.
#
#   benches/all.sh                  (builds the release binary and the fleet bench)
#   SIPMETER_BIN=path benches/all.sh  (measures that sipmeter binary; the fleet bench is built)
#   ALL_SKIP="rtp rate" benches/all.sh  (skips parts: fleet cpu rate rtp sipp conns)
#
# Parts, in order:
#   fleet  the state machines alone (crates/registrar/benches/fleet.rs), 5 runs: tx/s per core,
#          bytes per idle registered endpoint, heap per call
#   cpu    CPU per call, sipmeter, SIPp's UAC and the floor (the caller's datagrams alone, no SIP
#          work: crates/agent/examples/cps_floor.rs) against a SIPp UAS (cps.sh, CPS_PERF=1 CPS_FLOOR=1)
#   rate   the highest call rate of each (cps.sh at 8,000–16,000/s), then with SIPp's UAS socket
#          widened (CPS_UAS_BUFF), which takes SIPp's UAS drops out of the comparison
#   rtp    concurrent G.711 calls both ways, sipmeter ↔ sipmeter through the built-in registrar,
#          then callers of the built-in registrar's echo service (RTP_CALL=echo)
#   sipp   the same against SIPp's RTP echo (benches/load/rtp_sipp.sh)
#   conns  memory per registered endpoint over UDP, TCP, TLS, WS, WSS (benches/load/conns.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/sipmeter/target}
skip() { [[ " ${ALL_SKIP:-} " == *" $1 "* ]]; }

if [[ -z ${SIPMETER_BIN:-} ]]; then
  cargo build --release -q -p sipmeter
  export SIPMETER_BIN=$CARGO_TARGET_DIR/release/sipmeter
fi
echo "== $(date -u '+%F %T') UTC, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $SIPMETER_BIN"

if ! skip fleet; then
  echo "== fleet: state machines alone, 5 runs"
  for _ in 1 2 3 4 5; do cargo bench -q -p registrar --bench fleet 2>/dev/null; done
fi
if ! skip cpu; then
  echo "== cpu: CPU per call"
  CPS_PERF=1 CPS_FLOOR=1 benches/load/cps.sh 6000 1000 2000 3000
fi
if ! skip rate; then
  echo "== rate: highest call rate"
  benches/load/cps.sh 24000 8000 12000 16000
  CPS_UAS_BUFF=4194304 benches/load/cps.sh 24000 8000 16000
fi
if ! skip rtp; then
  echo "== rtp: sipmeter ↔ sipmeter"
  benches/load/rtp.sh 20 2000 3000
  RTP_CALL=echo benches/load/rtp.sh 20 1000 3000
fi
if ! skip sipp; then
  echo "== sipp: sipmeter → SIPp -rtp_echo"
  benches/load/rtp_sipp.sh 20 2000 3000
fi
if ! skip conns; then
  echo "== conns: memory per connection"
  benches/load/conns.sh 1000
fi
