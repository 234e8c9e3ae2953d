#!/usr/bin/env bash
# Model-checks the shared-memory algorithms with loom: the real code of the
# queue ring, the lock word, the semaphore, the event, the barrier and the
# waiting mechanism under all of them (sync/park.rs), with threads standing
# in for processes (see multiprocess/src/sys/model.rs).
#
#   scripts/loom.sh                 # every model
#   scripts/loom.sh ring            # the models in the ring's module
#   scripts/loom.sh park            # the waiting mechanism's own models
#   LOOM_MAX_PREEMPTIONS=3 scripts/loom.sh   # deeper than each model's bound
#
# A failing model prints loom's verdict (an assertion, "deadlock" for a
# sleeper nobody wakes, "Causality violation" for racing byte copies).
# Its own target dir, so it does not rebuild the normal build's artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
filter="loom_models"
if [[ -n "${1:-}" ]]; then
    filter="$1::loom_models"
fi
exec cargo test -p multiprocess --release --lib -- "${filter}" --test-threads="${LOOM_THREADS:-2}" --nocapture
