#!/usr/bin/env bash
# The state machines' benchmark (crates/registrar/benches/fleet.rs) built with profile-guided
# optimisation, beside the plain build, measured in turn on the same machine.
#
#   benches/fleet-pgo.sh [ROUNDS]      (default 5; FLEET_N sets the measured size, 10,000)
#
# 1. Builds the bench instrumented (-Cprofile-generate; the bench profile: fat LTO, one
#    codegen unit) and trains it on a fleet of PGO_TRAIN_N phones (default 1,000: another size
#    than the one measured). The training is the bench's own work (register, call, hang up):
#    the PGO figure says what the code does when the compiler lays it out for that work, an
#    upper bound, not what the plain build (`cargo bench`, the README's figure) does. A
#    profile of a `sipmeter run` does not apply to the bench: its functions are other
#    symbols (another crate hash and codegen-unit name), and LLVM skips them silently.
# 2. Merges the profile (llvm-profdata from rustup's llvm-tools component, added if missing)
#    and builds the bench again with -Cprofile-use.
# 3. Runs the plain build and the PGO build in turn, ROUNDS times each, with the machine's
#    speed before each round (user seconds of sha256 over 50 MB), and prints each run's
#    "user agents alone" and whole-bench figures.
#
# What PGO changes is the compiler's layout and inlining choices from counted branches; the
# code, the work and the figures' definitions are the plain bench's. Measures; never fails on a
# figure. Each build goes to its own target directory under PGO_DIR (default
# ~/.cache/sipmeter/pgo), so the plain build's cache is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
dir=${PGO_DIR:-$HOME/.cache/sipmeter/pgo}
train_n=${PGO_TRAIN_N:-1000}
mkdir -p "$dir"

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [[ ! -x $profdata ]]; then
  rustup component add llvm-tools >&2
fi

# Builds the bench into target directory $1 with RUSTFLAGS $2 added; prints its path.
build() {
  CARGO_TARGET_DIR=$1 RUSTFLAGS="${RUSTFLAGS:-} $2" cargo bench -q -p registrar --bench fleet \
    --no-run --message-format=json |
    sed -n 's/.*"executable":"\([^"]*fleet[^"]*\)".*/\1/p' | tail -1
}

echo "== plain build" >&2
plain=$(build "$dir/plain" "")
echo "== instrumented build, trained at N = $train_n" >&2
rm -rf "$dir/raw" && mkdir -p "$dir/raw"
inst=$(build "$dir/inst" "-Cprofile-generate=$dir/raw")
# Only the training run's profile is kept: build scripts run while building write their own.
rm -f "$dir"/raw/*.profraw
FLEET_N=$train_n "$inst" >/dev/null
"$profdata" merge -o "$dir/fleet.profdata" "$dir"/raw/*.profraw
echo "== PGO build" >&2
pgo=$(build "$dir/pgo" "-Cprofile-use=$dir/fleet.profdata")

[[ -e /tmp/fleet-pgo-50mb ]] || head -c 50000000 /dev/urandom >/tmp/fleet-pgo-50mb
echo "== $(date -u '+%F %T') UTC, N = ${FLEET_N:-10000}, $rounds rounds; sha = user seconds of sha256 over 50 MB"
for r in $(seq "$rounds"); do
  sha=$({ /usr/bin/time -f %U sha256sum /tmp/fleet-pgo-50mb >/dev/null; } 2>&1)
  for build in plain pgo; do
    bin=$plain
    [[ $build == pgo ]] && bin=$pgo
    out=$("$bin" 2>&1)
    ua=$(sed -n 's/.*the user agents alone.*: \([0-9]*\) transactions\/s per core (\([0-9]*\) with.*/\1 (\2 calls again)/p' <<<"$out")
    whole=$(sed -n 's/^  both:.*= \([0-9]*\) transactions\/s per core/\1/p' <<<"$out")
    echo "round $r sha ${sha}s $build: user agents alone $ua, whole bench $whole transactions/s per core"
  done
done
