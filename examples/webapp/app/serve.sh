#!/bin/sh
# The web container's PID 1: BusyBox httpd in the foreground, stopped promptly on SIGTERM
# (PID 1 has no default signal actions, so it must handle the signal itself).
httpd -f -v -p "${PORT:-8080}" -h /srv/www &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
