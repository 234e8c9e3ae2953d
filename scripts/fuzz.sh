#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while. NOT part of CI: the
# normal test suite only replays the committed corpora
# (`cargo test -p multiprocess --lib __fuzz`).
#
# Usage: scripts/fuzz.sh [target|all] [seconds]
#   target   frame_stream, handle_decode, or all (default: all, one after
#            the other)
#   seconds  how long to run each target (default: 600)
#
# Needs the nightly toolchain (installed here if missing) and cargo-fuzz
# (installed if missing). New inputs go to fuzz/work/<target> (ignored by
# git); the committed seeds in fuzz/corpus/<target> are only read. A crash
# leaves its input in fuzz/artifacts/<target>/: copy it to
# fuzz/regressions/<target>/ so the normal suite replays it, and fix it.
set -euo pipefail

target="${1:-all}"
seconds="${2:-600}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || cargo install cargo-fuzz
fi

case "$target" in
    all) targets=(frame_stream handle_decode) ;;
    frame_stream | handle_decode) targets=("$target") ;;
    *)
        echo "unknown target $target (frame_stream, handle_decode, all)" >&2
        exit 2
        ;;
esac

for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    echo "== fuzzing $t for ${seconds}s"
    # -max_len: room for the 70 KB seed that crosses the 64 KiB buffer.
    cargo +nightly fuzz run -O "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len=80000 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/"
done
