#!/usr/bin/env bash
# The driver's peak memory (max RSS) and wall time of `pageray plan` over N synthetic document
# paths (default 1,000,000 empty .pdf files in folders of 1,000): into an empty output, then
# against an output that already holds 1 page and PAGES pages (default 4) of every document
# (benchmarks/fill_output.py), where every document is skipped. The listing streams and the join
# against the committed pages runs in DuckDB under a memory limit, spilling to disk
# (pipeline/ledger/index.py), so the peak should not grow with N or with the pages committed.
#   benchmarks/plan_memory.sh [N] [ROOT]     PAGES=4 PAGERAY=pageray (another build's command)
set -euo pipefail
N=${1:-1000000}
ROOT=${2:-/tmp/pageray-plan-bench}
PAGES=${PAGES:-4}
PAGERAY=${PAGERAY:-pageray}
if [ ! -d "$ROOT/in" ] || [ "$(find "$ROOT/in" -name '*.pdf' | wc -l)" -ne "$N" ]; then
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
measure() {  # what, output folder
  /usr/bin/time -f "$1: %e s wall, max RSS %M KiB" $PAGERAY plan "$ROOT/in" --out "$2" >/dev/null
}
rm -rf "$ROOT/out"
measure "plan over $N paths, empty output" "$ROOT/out"
for pages in 1 $PAGES; do
  if [ ! -f "$ROOT/out-$pages/.filled" ]; then
    rm -rf "$ROOT/out-$pages"
    python3 "$(dirname "$0")/fill_output.py" "$ROOT/in" "$ROOT/out-$pages" "$pages"
    touch "$ROOT/out-$pages/.filled"
  fi
  measure "plan over $N paths, $((N * pages)) committed pages ($pages a document)" "$ROOT/out-$pages"
done
