#!/usr/bin/env bash
# Peak memory of `pageray plan` over N synthetic document paths (default 1,000,000 empty .pdf
# files in 1,000 folders). Listing and planning stream, so the peak should not grow with N.
set -euo pipefail
N=${1:-1000000}
ROOT=${2:-/tmp/pageray-plan-bench}
if [ ! -d "$ROOT/in" ] || [ "$(find "$ROOT/in" -name '*.pdf' | head -n "$N" | wc -l)" -lt "$N" ]; then
  rm -rf "$ROOT"; mkdir -p "$ROOT/in"
  python3 - "$ROOT/in" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for d in range((n + per - 1) // per):
    folder = os.path.join(root, f"d{d:05d}")
    os.mkdir(folder)
    for i in range(min(per, n - d * per)):
        open(os.path.join(folder, f"doc{i:04d}.pdf"), "wb").close()
PY
fi
/usr/bin/time -f "plan over $N paths: %e s wall, max RSS %M KiB" pageray plan "$ROOT/in" --out "$ROOT/out"
# The same listing against an output that already holds one committed page per document: the
# plan now reads the output index too, and every document is skipped.
if [ "${WITH_OUTPUT:-1}" = 1 ]; then
  rm -rf "$ROOT/out-full"
  python3 "$(dirname "$0")/fill_output.py" "$ROOT/in" "$ROOT/out-full"
  /usr/bin/time -f "plan over $N paths, $N committed pages: %e s wall, max RSS %M KiB" \
    pageray plan "$ROOT/in" --out "$ROOT/out-full"
fi
