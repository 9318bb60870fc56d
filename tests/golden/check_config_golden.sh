#!/bin/sh
# `sluiced --check-config NAME.conf`, run in this directory, must exit 1 and
# print exactly NAME.err, for every golden case; and a good config must
# give "ok" and exit 0.
#   check_config_golden.sh SLUICED GOLDEN_DIR
set -u
sluiced=$(realpath "$1")
cd "$2" || exit 1
fail=0 n=0
for conf in *.conf; do
	name=${conf%.conf}
	n=$((n + 1))
	got=$("$sluiced" --check-config "$conf" 2>&1)
	rc=$?
	if [ -f "$name.err" ]; then
		want=$(cat "$name.err")
		if [ "$rc" -ne 1 ] || [ "$got" != "$want" ]; then
			echo "FAIL $conf: exit $rc"
			echo "  got:  $got"
			echo "  want: $want"
			fail=$((fail + 1))
		fi
	else
		echo "FAIL $conf: no $name.err beside it"
		fail=$((fail + 1))
	fi
done
good=$(mktemp)
printf 'hostname = "mx.test";\nworkers = 1;\nrelay_networks = [ "192.0.2.0/24" ];\n' >"$good"
got=$("$sluiced" --check-config "$good" 2>&1)
rc=$?
rm -f "$good"
n=$((n + 1))
if [ "$rc" -ne 0 ] || [ "$got" != "ok" ]; then
	echo "FAIL good config: want exit 0 and 'ok', got exit $rc: $got"
	fail=$((fail + 1))
fi
echo "$n golden configs checked, $fail failed"
[ "$fail" -eq 0 ] && [ "$n" -gt 0 ]
