"""Reference solutions of the built-in bash tasks (each must score 1.0).

Kept in the test suite, not in the package, so that the shipped task set does not carry its
answers. Each value is a bash script run in the task's session, in the workspace.
"""

from __future__ import annotations

SOLUTIONS: dict[str, str] = {
    "files/create-hello": 'echo "Hello, World!" > hello.txt',
    "files/organize-by-extension": (
        'cd inbox && for f in *.*; do [ -f "$f" ] || continue; ext="${f##*.}"; mkdir -p "$ext"; mv "$f" "$ext/"; done'
    ),
    "files/find-large": "find data -type f -size +10240c | LC_ALL=C sort > large.txt",
    "files/rename-spaces": 'cd docs && for f in *\\ *; do mv "$f" "${f// /_}"; done',
    "files/symlink-current": "ln -s releases/v2.1 current",
    "files/dedupe": (
        "cd photos && declare -A seen; for f in $(ls | LC_ALL=C sort); do h=$(sha256sum \"$f\" | cut -d' ' -f1); "
        'if [ -n "${seen[$h]}" ]; then rm "$f"; else seen[$h]=1; fi; done'
    ),
    "files/archive-project": "tar -czf backup.tar.gz project",
    "files/extract-key": (
        'mkdir -p x && tar -xzf bundle.tar.gz -C x && cat "$(find x -name key.txt)" > answer.txt && rm -rf x'
    ),
    "text/count-errors": "grep -cw ERROR app.log > errors.txt",
    "text/top-ips": "awk '{print $1}' access.log | sort | uniq -c | sort -rn | head -3 | awk '{print $2, $1}' > top3.txt",
    "text/csv-sum": (
        "awk -F, 'NR==1{for(i=1;i<=NF;i++) if($i==\"amount\") c=i; next} {s+=$c} END{print s}' sales.csv > total.txt"
    ),
    "text/replace-in-configs": "find config -name '*.conf' -exec sed -i 's/foo_service/bar_service/g' {} +",
    "text/unique-words": "tr ' ' '\\n' < words.txt | tr 'A-Z' 'a-z' | grep -v '^$' | LC_ALL=C sort -u > unique.txt",
    "text/extract-emails": (
        "grep -oE '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]+' contacts.txt | LC_ALL=C sort -u > emails.txt"
    ),
    "text/active-users": (
        'python3 -c \'import json; [print(u["name"]) for u in json.load(open("users.json")) if u["active"]]\' '
        "> active.txt"
    ),
    "text/crlf-to-lf": "sed -i 's/\\r$//' dos.txt",
    "text/dedupe-lines": "awk '!seen[$0]++' list.txt > list.tmp && mv list.tmp list.txt",
    "git/init-commit": "cd project && git init -q && git add -A && git commit -qm 'Initial commit'",
    "git/feature-branch": (
        "cd repo && git checkout -qb feature/login main && echo login > login.txt && git add login.txt "
        "&& git commit -qm 'add login'"
    ),
    "git/revert-commit": "cd repo && git revert --no-edit HEAD >/dev/null",
    "git/find-commit": "git -C repo log --format=%H -S TODO-42 > found.txt",
    "git/gitignore": "printf '*.log\\nbuild/\\n' > repo/.gitignore",
    "git/resolve-conflict": (
        "cd repo && (git merge feature >/dev/null 2>&1; true) && printf 'Hello from main\\nHello from feature\\n' "
        "> greeting.txt && git add greeting.txt && git commit -qm 'merge feature'"
    ),
    "git/amend-message": "git -C repo commit -q --amend -m 'Fix typo in README'",
    "fix/python-mean": (
        "sed -i -e 's/values\\[1:\\]/values/' -e 's|total // len(values)|total / len(values)|' stats.py"
    ),
    "fix/bash-quoting": (
        "printf '#!/bin/bash\\nmkdir -p backup\\nfor f in *.txt; do\\n  cp \"$f\" backup/\\ndone\\n' > backup.sh"
    ),
    "fix/make-runnable": "sed -i 's/\\r$//' tool.sh && chmod +x tool.sh",
    "fix/python-syntax": "sed -i -e 's/^def load(path)$/def load(path):/' -e 's/ key\")/ keys\")/' config_loader.py",
    "fix/failing-test": "sed -i -e 's/range(1, n)/range(1, n + 1)/' -e 's/n % 2 == 1/n % 2 == 0/' calc.py",
    "proc/stop-runaway": (
        "for p in /proc/[0-9]*; do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^python3 spin.py'; "
        "then kill ${p#/proc/}; fi; done; sleep 0.3"
    ),
    "proc/pid-file": (
        "for p in /proc/[0-9]*; do if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^python3 worker.py'; "
        "then echo ${p#/proc/} > worker.pid; fi; done"
    ),
    "proc/background-server": (
        "(cd site && nohup python3 -m http.server 8080 --bind 127.0.0.1 >/dev/null 2>&1 &) ; "
        "for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8080), 1)' "
        "2>/dev/null && break; sleep 0.1; done"
    ),
    "proc/exit-code": "./check.sh; echo $? > code.txt",
    "perm/make-executable": "chmod 755 bin/*.sh",
    "perm/private-key": "chmod 600 secrets/key.pem && chmod 700 secrets",
    "perm/read-only": "chmod 444 config.ini",
    "perm/world-writable": "find shared -type f -perm -o+w -exec chmod o-w {} +",
}
