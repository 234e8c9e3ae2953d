#!/usr/bin/env bash
# Runs the in-process unit tests under Miri (nightly toolchain with the miri
# component), which checks every unsafe block they reach for undefined
# behaviour: the shared-region accessors, the typed views, the frame and
# handle codecs, the futex calls.
#
#   scripts/miri.sh                 # every unit test Miri can run
#   scripts/miri.sh queue::tests    # one module
#
# Miri has no fork, memfd_create, mmap of a file or SCM_RIGHTS, so under
# Miri a SharedRegion is heap memory (sys/shm.rs) and the tests that need
# another process or a descriptor are marked
# `#[cfg_attr(miri, ignore = "...")]` with the reason.
# -Zmiri-disable-isolation: tests read /proc and the clock.
# -Zmiri-permissive-provenance: rustix's libc backend passes pointers to
#  syscall(2) as integers.
set -euo pipefail
cd "$(dirname "$0")/.."
# A machine that has the nightly toolchain but not Miri gets the component.
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup component add --toolchain nightly miri rust-src
fi
export MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-disable-isolation -Zmiri-permissive-provenance"
exec cargo +nightly miri test -p multiprocess --lib -- "${1:-}" --test-threads="${MIRI_THREADS:-2}"
