#!/bin/bash
# Run every test: all suites in the plain build, all suites again in the
# ASan+UBSan build (the integration tests then drive a sanitized sluiced),
# and each libFuzzer harness for a fixed time on its corpus.  Ends with the
# summary line "N passed, N failed[, N skipped]".
#   tests/run_all.sh BUILD ASAN_BUILD FUZZ_BUILD FUZZ_SECONDS
set -u
build=$1 asan=$2 fuzz=$3 fuzz_seconds=$4
top=$(cd "$(dirname "$0")/.." && pwd)
passed=0 failed=0 skipped=0

# Add the counts from a meson test run's summary to the totals.
count_meson() {
	local log=$1 ok fail skip
	ok=$(awk '/^Ok:/ {print $2}' "$log" | tail -1)
	fail=$(awk '/^(Fail|Timeout|Unexpected Pass):/ {s += $NF} END {print s + 0}' "$log")
	skip=$(awk '/^Skipped:/ {print $2}' "$log" | tail -1)
	passed=$((passed + ${ok:-0}))
	failed=$((failed + fail))
	skipped=$((skipped + ${skip:-0}))
	if ! grep -q '^Ok:' "$log"; then
		echo "meson test produced no summary: counted as one failure"
		failed=$((failed + 1))
	fi
}

run_meson() {
	local dir=$1; shift
	local log
	log=$(mktemp)
	echo "== meson test -C $dir $*"
	meson test -C "$dir" --print-errorlogs "$@" 2>&1 | tee "$log"
	count_meson "$log"
	rm -f "$log"
}

run_meson "$build"
run_meson "$asan"

echo "== fuzzing, ${fuzz_seconds}s per harness"
for f in "$fuzz"/tests/fuzz/fuzz_*; do
	[ -f "$f" ] && [ -x "$f" ] || continue
	name=$(basename "$f")
	work=$(mktemp -d)
	cp -r "$top/tests/fuzz/corpus/$name/." "$work/" 2>/dev/null
	dict=()
	[ -f "$top/tests/fuzz/$name.dict" ] && dict=(-dict="$top/tests/fuzz/$name.dict")
	if "$f" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/" "${dict[@]}" "$work" >"$work.log" 2>&1; then
		echo "ok   $name ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log" | awk '{print $2}') runs)"
		passed=$((passed + 1))
	else
		echo "FAIL $name: crash reproducer kept in $work"
		tail -40 "$work.log"
		failed=$((failed + 1))
		continue
	fi
	rm -rf "$work" "$work.log"
done

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
