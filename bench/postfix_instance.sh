#!/bin/bash
# A private, throwaway Postfix instance for side-by-side measurements:
# Debian's package, its durable queue and defaults kept, listening on one
# loopback port, delivering example.test to Maildir (like sluice's default
# local route) with virtual(8).  Nothing outside DIR is touched and the
# system Postfix is never started.
#   bench/postfix_instance.sh start DIR PORT     (prints the master PID)
#   bench/postfix_instance.sh stop DIR
# Needs root (Postfix's master runs as root and drops to mail_owner).
set -eu
cmd=$1 dir=$2
case "$cmd" in
start)
	port=$3
	rm -rf "$dir"
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/mail"
	cp /etc/postfix/master.cf.proto "$dir/etc/master.cf"
	cp /etc/postfix/dynamicmaps.cf "$dir/etc/" 2>/dev/null || true
	# The smtpd line for our port; the default port-25 line is dropped.
	sed -i -e '/^smtp[[:space:]]\+inet/d' "$dir/etc/master.cf"
	echo "127.0.0.1:$port inet n - y - - smtpd" >>"$dir/etc/master.cf"
	chown postfix:postfix "$dir/mail" "$dir/data"
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
virtual_mailbox_maps = static:example.test/user/
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
virtual_destination_concurrency_limit = 20
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
	postfix -c "$dir/etc" check >/dev/null 2>&1 || true
	postfix -c "$dir/etc" start >/dev/null 2>&1
	# master writes its PID into the queue directory.
	for _ in $(seq 100); do
		[ -s "$dir/queue/pid/master.pid" ] && break
		sleep 0.1
	done
	tr -d ' ' <"$dir/queue/pid/master.pid"
	;;
stop)
	postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
	;;
*)
	echo "usage: $0 start DIR PORT | stop DIR" >&2
	exit 2
	;;
esac
