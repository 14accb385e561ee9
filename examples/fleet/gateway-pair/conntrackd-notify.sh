#!/bin/sh
# keepalived notify script: on becoming master (primary), commit the
# connections learnt from the peer into the kernel, then start afresh and
# send our whole table to the peer; on becoming backup, ask the peer for
# its table and start collecting it.
#
#   conntrackd-notify.sh primary|backup CONNTRACKD_CONF
conf=$2
case $1 in
primary)
	conntrackd -C "$conf" -c # commit the external cache into the kernel
	conntrackd -C "$conf" -f # flush the internal and external caches
	conntrackd -C "$conf" -R # resync the internal cache with the kernel
	conntrackd -C "$conf" -B # send a bulk update to the peer
	;;
backup)
	conntrackd -C "$conf" -t # shorten the kernel's timers (the peer takes over)
	conntrackd -C "$conf" -n # request a resync from the peer
	;;
esac
exit 0
