#!/bin/bash
# rock-env sandbox reaper: one tiny bash per sandbox with a ttl or idle_ttl, outside its cgroups.
# usage: reaper.sh STATE_DIR EXPIRES_AT IDLE_TTL PYTHON   (EXPIRES_AT/IDLE_TTL: integer seconds, 0 = none)
# stdin is a pipe whose write end the owner holds: EOF means the owner is gone (or dropped the sandbox).
# It sleeps in `read -t` (no polling) until the absolute or idle deadline or EOF, then reaps the
# sandbox with `python -m rock_env.sandbox.gc --reap STATE_DIR`.
dir=$1
expires=${2:-0}
idle=${3:-0}
py=${4:-python3}
while :; do
    now=$EPOCHSECONDS
    deadline=0
    if [ "$expires" -gt 0 ]; then deadline=$expires; fi
    if [ "$idle" -gt 0 ]; then
        last=$(stat -c %Y "$dir/activity" 2>/dev/null || echo "$now")
        idle_deadline=$((last + idle))
        if [ "$deadline" -eq 0 ] || [ "$idle_deadline" -lt "$deadline" ]; then deadline=$idle_deadline; fi
    fi
    if [ "$deadline" -eq 0 ]; then
        read -r _ || break
        continue
    fi
    if [ "$now" -ge "$deadline" ]; then break; fi
    read -r -t $((deadline - now)) _
    rc=$?
    if [ "$rc" -le 128 ] && [ "$rc" -ne 0 ]; then break; fi  # EOF: the owner is gone
done
[ -d "$dir" ] || exit 0
exec "$py" -m rock_env.sandbox.gc --reap "$dir" </dev/null
