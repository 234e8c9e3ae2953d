#!/usr/bin/env bash
# Installs the pinned RQ that the benchmarks' remote/rq_* rows compare
# against (python3 -m pip install --user rq==3.0.0), if `import rq` fails.
# Tolerant of failure: without rq those rows say "RQ not available: <why>"
# and everything else runs. Debian 12's pip refuses --user installs into the
# system Python (PEP 668) unless told --break-system-packages (a --user
# install does not touch the system's packages).
set -u
PIN="rq==3.0.0"
if python3 -c 'import rq' >/dev/null 2>&1; then
  echo "install-rq: rq $(python3 -c 'import rq; print(rq.__version__)') already importable"
  exit 0
fi
pip=(python3 -m pip install --user --quiet --disable-pip-version-check "$PIN")
if ! out=$(timeout 300 "${pip[@]}" 2>&1); then
  if grep -q externally-managed <<<"$out"; then
    out=$(timeout 300 "${pip[@]}" --break-system-packages 2>&1) || {
      echo "install-rq: could not install $PIN (the RQ rows will be skipped): ${out##*$'\n'}"
      exit 0
    }
  else
    echo "install-rq: could not install $PIN (the RQ rows will be skipped): ${out##*$'\n'}"
    exit 0
  fi
fi
if python3 -c 'import rq' >/dev/null 2>&1; then
  echo "install-rq: installed $PIN"
else
  echo "install-rq: installed $PIN but python3 cannot import it (the RQ rows will be skipped)"
fi
exit 0
