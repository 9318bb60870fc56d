#!/bin/bash
# A private, throwaway Postfix instance for side-by-side measurements:
# Debian's package, its durable queue and defaults kept, listening on one
# loopback port.  Nothing outside DIR is touched and the system Postfix is
# never started.
#
#   bench/postfix_instance.sh start DIR PORT [RELAY_PORT]   (prints the master PID)
#   bench/postfix_instance.sh stop DIR
#   bench/postfix_instance.sh queue DIR      (prints how many messages are queued)
#
# Delivery, laid out like sluice's local route so that the same verifier
# reads both:
#   - example.test: virtual(8) into one Maildir per recipient,
#     DIR/mail/example.test/<localpart>/{new,cur,tmp} for r0..r999 (the
#     recipients sluice-bench sends to) and user; other local parts get
#     550 5.1.1 at RCPT (sluice's route is a catch-all, Postfix's table a
#     list: virtual(8) does not allow a regexp to name the mailbox);
#   - relay.test (only with RELAY_PORT): smtp(8) to [127.0.0.1]:RELAY_PORT
#     through transport_maps (the benchmark's sink standing in for a remote
#     MX);
#   - anything else: refused (554 relay access denied) unless the client is
#     in mynetworks (loopback); there is no route for it anyway.
#
# Settings that differ from Postfix's defaults, and why:
#   queue_directory, data_directory, maillog_file   all under DIR
#   inet_interfaces, inet_protocols, master.cf       one loopback listener
#   mydestination (empty), virtual_*                 the delivery above
#   default_process_limit = 200                      100 concurrent benchmark
#                                                    sessions plus delivery agents
#   smtpd_client_connection_{count,rate}_limit = 0   the load comes from one address
#   smtputf8_enable = no, biff = no, no aliases      nothing else to look up
# Everything else (durable queue with fsync, connection cache, concurrency
# and retry policy) is Debian's Postfix as shipped.
#
# On a failed start it prints `postfix check`'s complaints and the tail of
# DIR/maillog on stderr and exits 1.  stop waits (bounded) until the master
# has exited and kills its PID only if it did not.
# Needs root (Postfix's master runs as root and drops to mail_owner).
set -eu
cmd=${1:-} dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
	echo "usage: $0 start DIR PORT [RELAY_PORT] | stop DIR | queue DIR" >&2
	exit 2
fi

master_pid() {
	[ -s "$dir/queue/pid/master.pid" ] && tr -d ' \n' <"$dir/queue/pid/master.pid"
}

case "$cmd" in
start)
	port=${3:?PORT missing} relay_port=${4:-}
	rm -rf "$dir"
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail"
	cp /etc/postfix/master.cf.proto "$dir/etc/master.cf"
	cp /etc/postfix/dynamicmaps.cf "$dir/etc/" 2>/dev/null || true
	# The smtpd line for our port; the default port-25 line is dropped.
	sed -i -e '/^smtp[[:space:]]\+inet/d' "$dir/etc/master.cf"
	echo "127.0.0.1:$port inet n - y - - smtpd" >>"$dir/etc/master.cf"
	chown postfix:postfix "$dir/mail" "$dir/data"
	# One Maildir per recipient: r0..r999 (sluice-bench's recipients) and
	# user (bench/accept_vs_postfix.sh).  virtual(8) refuses regexp
	# substitution ($1) in virtual_mailbox_maps, so the table lists them.
	{
		for k in $(seq 0 999); do echo "r$k@example.test example.test/r$k/"; done
		echo "user@example.test example.test/user/"
	} >"$dir/etc/virtual_mailbox"
	transport=""
	if [ -n "$relay_port" ]; then
		transport="transport_maps = inline:{ relay.test=smtp:[127.0.0.1]:$relay_port }"
	fi
	cat >"$dir/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = example.test
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = texthash:$dir/etc/virtual_mailbox
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
$transport
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
CF
	# postfix check also creates the queue's subdirectories; its warnings
	# are worth seeing, its silence is the normal case.
	postfix -c "$dir/etc" check >&2 || true
	if ! postfix -c "$dir/etc" start >"$dir/start.log" 2>&1; then
		echo "postfix_instance: postfix start failed:" >&2
		cat "$dir/start.log" >&2
		tail -20 "$dir/maillog" >&2 2>/dev/null || true
		exit 1
	fi
	# master writes its PID into the queue directory.
	for _ in $(seq 100); do
		[ -s "$dir/queue/pid/master.pid" ] && break
		sleep 0.1
	done
	if ! pid=$(master_pid); then
		echo "postfix_instance: no master.pid after 10 s" >&2
		tail -20 "$dir/maillog" >&2 2>/dev/null || true
		exit 1
	fi
	echo "$pid"
	;;
stop)
	[ -d "$dir/etc" ] || exit 0
	pid=$(master_pid || true)
	postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
	if [ -n "$pid" ]; then
		# postfix stop signals the master and returns; wait until it is gone.
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || exit 0
			sleep 0.1
		done
		echo "postfix_instance: master $pid still running 10 s after stop; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	;;
queue)
	# Messages anywhere in the queue (a file per message under these).
	n=0
	for q in maildrop incoming active deferred hold; do
		[ -d "$dir/queue/$q" ] || continue
		n=$((n + $(find "$dir/queue/$q" -type f | wc -l)))
	done
	echo "$n"
	;;
*)
	echo "usage: $0 start DIR PORT [RELAY_PORT] | stop DIR | queue DIR" >&2
	exit 2
	;;
esac
