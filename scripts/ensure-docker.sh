#!/usr/bin/env bash
# Make sure a Docker daemon answers on this machine (idempotent).
#
# - If `docker info` works already, do nothing.
# - Otherwise (as root): install docker.io with apt if dockerd is missing, start dockerd in the
#   background with default flags (log: $ROCK_ENV_DOCKERD_LOG, default /var/log/rock-env-dockerd.log)
#   and wait until `docker info` answers (at most $ROCK_ENV_DOCKERD_WAIT seconds, default 60).
#
# Exit status: 0 when the daemon answers, 1 otherwise (with a message on stderr saying why).
# Run it with `bash --norc --noprofile scripts/ensure-docker.sh`.
set -euo pipefail

LOG="${ROCK_ENV_DOCKERD_LOG:-/var/log/rock-env-dockerd.log}"
WAIT="${ROCK_ENV_DOCKERD_WAIT:-60}"
LOCK="${ROCK_ENV_DOCKERD_LOCK:-/run/rock-env-dockerd.lock}"

say() { echo "ensure-docker: $*" >&2; }

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && docker_ok; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    say "the Docker daemon does not answer and starting it needs root; run this script as root" \
        "or start Docker yourself (e.g. 'sudo systemctl start docker')."
    exit 1
fi

# Only one caller starts the daemon; others wait on the lock and then find it running.
exec 9>"$LOCK"
if ! flock -w "$WAIT" 9; then
    say "could not take $LOCK within ${WAIT}s (another ensure-docker.sh is stuck?)"
    exit 1
fi

if command -v docker >/dev/null 2>&1 && docker_ok; then
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "dockerd or docker is missing: installing docker.io with apt"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q docker.io >>"$LOG" 2>&1; then
        apt-get update -q >>"$LOG" 2>&1 || true
        if ! apt-get install -y -q docker.io >>"$LOG" 2>&1; then
            say "apt-get install docker.io failed; see $LOG"
            exit 1
        fi
    fi
fi

# A daemon process may exist but not answer yet (e.g. started a moment ago): then just wait.
if ! pgrep -x dockerd >/dev/null 2>&1; then
    # A stale pid file from a crashed daemon would stop the new one from starting.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
        rm -f /var/run/docker.pid
    fi
    say "starting dockerd (log: $LOG)"
    nohup setsid dockerd >>"$LOG" 2>&1 </dev/null &
fi

deadline=$(( $(date +%s) + WAIT ))
while ! docker_ok; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "dockerd did not answer within ${WAIT}s; last lines of $LOG:"
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    sleep 0.2
done
say "Docker daemon is up"
exit 0
