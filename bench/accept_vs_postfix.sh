#!/bin/bash
# Accept-and-queue, durable, side by side: Postfix's smtp-source against
# sluiced and against a private Postfix (bench/postfix_instance.sh, durable
# queue, defaults kept), interleaved, RUNS times each.  1 KiB messages,
# SESSIONS parallel sessions, one message per connection (add -d for
# persistent connections via EXTRA="-d").  Prints messages/s per run and
# the medians.  Loopback only; everything it starts is stopped by PID.
#   bench/accept_vs_postfix.sh [MESSAGES] [RUNS] [SESSIONS]
# Needs root (Postfix) and build/sluiced.
set -eu
msgs=${1:-20000} runs=${2:-3} sessions=${3:-100}
extra=${EXTRA:-}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$work" # Postfix daemons run as the postfix user
sl_port=$((20000 + RANDOM % 20000)) pf_port=$((sl_port + 1))
sl_pid=""

cleanup() {
	[ -n "$sl_pid" ] && kill "$sl_pid" 2>/dev/null && wait "$sl_pid" 2>/dev/null
	"$top/bench/postfix_instance.sh" stop "$work/postfix" || true
	rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/sluice.conf" <<CF
listen = ( { address = "127.0.0.1"; port = $sl_port; role = "mta"; } );
spool_dir = "$work/spool";
log_level = "warn";
max_connections_per_ip = 10000;
routes = ( { domain = "example.test"; action = "local"; maildir = "$work/mail"; } );
CF
"$top/build/sluiced" -c "$work/sluice.conf" 2>"$work/sluiced.log" &
sl_pid=$!
"$top/bench/postfix_instance.sh" start "$work/postfix" "$pf_port" >/dev/null

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "port $1 did not open" >&2
	return 1
}
wait_port "$sl_port"
wait_port "$pf_port"

# One timed smtp-source run; prints messages per second.
measure() {
	local port=$1 s e
	s=$(date +%s.%N)
	smtp-source $extra -s "$sessions" -m "$msgs" -l 1024 -f sender@example.test \
		-t user@example.test "127.0.0.1:$port"
	e=$(date +%s.%N)
	echo "$msgs / ($e - $s)" | bc -l | xargs printf '%.0f\n'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

: >"$work/sl" ; : >"$work/pf"
for r in $(seq "$runs"); do
	s=$(measure "$sl_port"); echo "$s" >>"$work/sl"
	p=$(measure "$pf_port"); echo "$p" >>"$work/pf"
	echo "run $r: sluice $s msg/s, postfix $p msg/s"
done
sm=$(median <"$work/sl") pm=$(median <"$work/pf")
echo "median: sluice $sm msg/s, postfix $pm msg/s, ratio $(echo "$sm / $pm" | bc -l | xargs printf '%.1f')x"
echo "(smtp-source -s $sessions -m $msgs -l 1024 $extra; $(nproc) cores)"
