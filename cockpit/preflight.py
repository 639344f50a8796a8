"""Checks, before the test suite starts, that PostgreSQL and Redis answer; says what is missing."""

import os
import socket
import sys
from urllib.parse import urlsplit


def reachable(url: str, default_port: int) -> tuple[bool, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=3):
            return True, f"{host}:{port}"
    except OSError as exc:
        return False, f"{host}:{port} ({exc.strerror or exc})"


def main() -> int:
    problems = []
    checks = [
        (
            "DATABASE_URL",
            5432,
            "PostgreSQL",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        ),
        (
            "REDIS_URL",
            6379,
            "Redis",
            'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
        ),
    ]
    for variable, port, name, hint in checks:
        url = os.environ.get(variable, "")
        if not url:
            problems.append(f"{variable} is not set: the tests need {name}.")
            continue
        ok, where = reachable(url, port)
        if not ok:
            problems.append(
                f"{name} is not reachable at {where} ({variable}). Start it, e.g.: {hint}"
            )
    if problems:
        print("The test suite needs real servers:", *problems, sep="\n  - ", file=sys.stderr)
        return 1
    print("PostgreSQL and Redis are reachable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
