#!/usr/bin/env bash
# The driver's peak memory (max RSS) and wall time of `pageray plan` over N synthetic document
# paths (default 1,000,000 empty .pdf files in folders of 1,000): into an empty output, then
# against an output that already holds 1 page and PAGES pages (default 10) of every document
# (benchmarks/fill_output.py: merged files, as a finished run leaves them), where every document
# is skipped. The listing streams and the join against the committed pages runs in DuckDB under
# a memory limit, spilling to disk (pipeline/ledger/index.py), so the peak should not grow with
# the pages committed. Last, each peak against the empty output's, and the peak at 100 pages a
# document projected from the slope between the two filled outputs.
#   benchmarks/plan_memory.sh [N] [ROOT]     PAGES=10 PAGERAY=pageray (another build's command)
set -euo pipefail
N=${1:-1000000}
ROOT=${2:-/tmp/pageray-plan-bench}
PAGES=${PAGES:-10}
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
declare -A PEAK
measure() {  # key, what, output folder
  local line
  line=$( { /usr/bin/time -f "%e %M" $PAGERAY plan "$ROOT/in" --out "$3" >/dev/null; } 2>&1 | tail -1)
  PEAK[$1]=$(( ${line#* } / 1024 ))
  echo "$2: ${line% *} s wall, max RSS ${PEAK[$1]} MiB"
}
rm -rf "$ROOT/out"
measure 0 "plan over $N paths, empty output" "$ROOT/out"
for pages in 1 $PAGES; do
  if [ ! -f "$ROOT/out-$pages/.filled" ]; then
    rm -rf "$ROOT/out-$pages"
    python3 "$(dirname "$0")/fill_output.py" "$ROOT/in" "$ROOT/out-$pages" "$pages"
    touch "$ROOT/out-$pages/.filled"
  fi
  measure "$pages" "plan over $N paths, $((N * pages)) committed pages ($pages a document)" "$ROOT/out-$pages"
done
python3 - "$N" "$PAGES" "${PEAK[0]}" "${PEAK[1]}" "${PEAK[$PAGES]}" <<'PY'
import sys
n, pages, empty, one, many = map(int, sys.argv[1:])
slope = (many - one) / (n * (pages - 1))  # MiB per committed page, between the two filled outputs
# a slope under zero is noise, not memory given back: then the projection is the larger peak
projected = max(one, many) + max(0.0, slope) * n * (100 - pages)
print(f"peak / empty output's: {one / empty:.2f}x at {n:,} committed pages, {many / empty:.2f}x at {n * pages:,}")
print(f"slope {slope * 2**20:.1f} bytes a committed page; projected at {100 * n:,} pages (100 a document): "
      f"{projected:.0f} MiB ({projected / empty:.2f}x); PAGES=100 measures it (a fill of ~5 min)")
PY
