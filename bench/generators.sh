#!/bin/bash
# generators.sh: how much load sluice-bench send generates next to Postfix's
# smtp-source, on this machine, in one run, with the same settings (1 KiB
# messages, 100 sessions, one message per connection and persistent
# connections), into the same sinks: Postfix's smtp-sink and sluice-bench
# sink (neither stores anything).  Runs alternate between the generators,
# RUNS times each; the rates are messages over the wall-clock time of the
# whole command (start-up included, for both), and the CPU time of the
# generator process per message (user + system) is reported too: what it
# takes from a server under test on the same machine.  It also runs
# build/bench/conn_floor, the kernel's ceiling for one connection per
# message here.
#
#   bench/generators.sh [BUILD [RUNS [MESSAGES_PER_CONN [MESSAGES_PERSISTENT]]]]
#   (defaults: build 3 20000 100000)
#
# Prints one line per run and a table of medians with the ratio
# sluice-bench / smtp-source.  Loopback only; every process it starts is
# stopped by PID on exit, also on Ctrl-C.  Needs Postfix's smtp-source and
# smtp-sink (Debian's postfix package).
set -u
build=${1:-build} runs=${2:-3} n_conn=${3:-20000} n_pers=${4:-100000}
bench=$build/sluice-bench
for tool in smtp-source smtp-sink; do
	command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || {
		echo "generators.sh: $tool not found (apt-get install postfix)" >&2
		exit 2
	}
done
[ -x "$bench" ] && [ -x "$build/bench/conn_floor" ] || {
	echo "generators.sh: no $bench or $build/bench/conn_floor (run make build)" >&2
	exit 2
}
PATH=$PATH:/usr/sbin

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
	for _ in $(seq 100); do
		grep -q ":$(printf '%04X' "$1") 00000000:0000 0A" /proc/net/tcp && return 0
		sleep 0.05
	done
	echo "generators.sh: nothing listens on port $1" >&2
	exit 1
}

# The sinks.
port_pf=$(free_port)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
smtp-sink "${user[@]}" "127.0.0.1:$port_pf" 4096 >/dev/null 2>&1 &
pids+=($!)
port_sb=$(free_port)
"$bench" sink --listen "127.0.0.1:$port_sb" --duration 3600 >/dev/null 2>&1 &
pids+=($!)
wait_port "$port_pf"
wait_port "$port_sb"

# One timed run; prints "messages/s CPU-ms-per-1000" (rate over the wall
# clock of the whole command; the generator's own user + system CPU).
timed() {
	local n=$1 t0 t1 cpu TIMEFORMAT='%3U %3S'
	shift
	t0=$(date +%s.%N)
	if ! cpu=$( { time timeout 600 "$@" >/dev/null 2>&1; } 2>&1); then
		echo "generators.sh: failed: $*" >&2
		echo "0 0"
		return
	fi
	t1=$(date +%s.%N)
	echo "$n $t0 $t1 $cpu" | awk '{printf "%.0f %.0f\n", $1 / ($3 - $2), ($4 + $5) * 1e6 / $1}'
}

gen_source() { # SINK_PORT N PERSISTENT
	local d=()
	[ "$3" = 1 ] && d=(-d)
	timed "$2" smtp-source "${d[@]}" -s 100 -m "$2" -l 1024 -f bench@sluice-bench.test \
		-t r0@example.test "127.0.0.1:$1"
}

gen_bench() { # SINK_PORT N PERSISTENT [more options]
	local port=$1 n=$2 per=1
	[ "$3" = 1 ] && per=0
	shift 3
	timed "$n" "$bench" send --server "127.0.0.1:$port" --messages "$n" --connections 100 \
		--size 1k --per-connection "$per" --quiet "$@"
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Generators: smtp-source (one process, one thread); sluice-bench with
# one thread (pipelining on, then lockstep like smtp-source) and with a
# thread per core (its default; pipelined, then lockstep).
gens=(src one lock all alllock)
declare -A label=([src]="smtp-source" [one]="sluice-bench, 1 thread"
	[lock]="sluice-bench, 1 thread, lockstep" [all]="sluice-bench, $(nproc) threads"
	[alllock]="sluice-bench, $(nproc) threads, lockstep")
gen() { # WHICH SINK_PORT N PERSISTENT
	case $1 in
	src) gen_source "$2" "$3" "$4" ;;
	one) gen_bench "$2" "$3" "$4" --threads 1 ;;
	lock) gen_bench "$2" "$3" "$4" --threads 1 --pipelining off ;;
	all) gen_bench "$2" "$3" "$4" ;;
	alllock) gen_bench "$2" "$3" "$4" --pipelining off ;;
	esac
}

declare -A res cpu
for sink in smtp-sink sluice-bench-sink; do
	port=$port_pf
	[ "$sink" = sluice-bench-sink ] && port=$port_sb
	for persist in 0 1; do
		n=$n_conn mode="one message per connection"
		[ $persist = 1 ] && n=$n_pers mode="persistent connections"
		for r in $(seq "$runs"); do
			# Rotate which generator goes first.
			line="run $r  $sink  $mode:"
			for k in $(seq 0 4); do
				g=${gens[$(((k + r) % 5))]}
				read -r v c < <(gen "$g" "$port" "$n" $persist)
				res[$sink,$persist,$g]+="$v "
				cpu[$sink,$persist,$g]+="$c "
				line+="  ${label[$g]} $v (${c} us CPU/msg)"
			done
			echo "$line msg/s" >&2
		done
	done
done
floor=$("$build/bench/conn_floor" 50000 100 "$(free_port)")
echo "$floor" >&2

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf a ? "%.2fx" : "n/a", b / a}'; }
printf '\n| sink | connections | %s | %s | %s | %s | %s |\n' "${label[src]}" "${label[one]}" \
	"${label[lock]}" "${label[all]}" "${label[alllock]}"
printf '| --- | --- | --- | --- | --- | --- | --- |\n'
for sink in smtp-sink sluice-bench-sink; do
	for persist in 0 1; do
		mode="one per message"
		[ $persist = 1 ] && mode="persistent"
		a=$(echo "${res[$sink,$persist,src]}" | median)
		row="| $sink | $mode | $a, $(echo "${cpu[$sink,$persist,src]}" | median) us"
		for g in one lock all alllock; do
			b=$(echo "${res[$sink,$persist,$g]}" | median)
			row+=" | $b ($(ratio "$a" "$b")), $(echo "${cpu[$sink,$persist,$g]}" | median) us"
		done
		echo "$row |"
	done
done
printf '\nmedians of %s runs: msg/s (ratio to smtp-source), the generator'"'"'s CPU per message\n%s\n' "$runs" "$floor"
