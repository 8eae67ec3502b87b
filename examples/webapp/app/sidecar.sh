#!/bin/sh
# The sidecar: every few seconds it checks the web server over localhost (the containers of a pod
# share one network namespace) and writes what it saw into the shared emptyDir, which the web
# container serves as /shared/status.txt (its readiness probe waits for that file).
trap 'exit 0' TERM INT
url="http://127.0.0.1:${PORT:-8080}/healthz"
# Both containers start together: give the web server a few seconds to listen before the first report.
i=0
while [ "$i" -lt 10 ] && ! wget -q -O /dev/null "$url" 2>/dev/null; do i=$((i + 1)); sleep 1; done
n=0
while true; do
  n=$((n + 1))
  if wget -q -O /dev/null "$url" 2>/dev/null; then web=up; else web=down; fi
  echo "check $n at $(date -u +%H:%M:%S): web server on localhost:${PORT:-8080} is $web" > /shared/status.txt.new
  mv /shared/status.txt.new /shared/status.txt
  sleep "${INTERVAL:-5}" &
  wait $!
done
