#!/usr/bin/env python3
"""Regenerates expected.json from the real Docker Compose v2 (not run in CI).

    python3 tests/conformance/dotenv/regenerate.py [PATH-TO-docker-compose]

Without an argument it asks `docker compose` (the Compose v2 plugin that
runbooks/hetzner-parity/sandbox/compose-v2.sh installs).

For each cases/NAME.env it asks Compose twice, with an empty environment:
1. a service with `env_file: NAME.env`; `config --format json` lists every
   key Compose read and its value (what a container gets);
2. `--env-file NAME.env config` with a service whose environment sets
   `KEY: ${KEY}` for each key that can be interpolated: the project's `.env`
   as the server reads it. Both must agree, or the script stops.
A case Compose refuses either way (non-zero exit) is recorded as refused.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
COMPOSE = sys.argv[1:2] or ["docker", "compose"]
ENV = {"PATH": "/usr/bin:/bin"}


def config(folder, args):
    """The `environment` of service s, or None when Compose refuses."""
    out = subprocess.run(
        [*COMPOSE, "-p", "c", *args, "config", "--format", "json"],
        cwd=folder, env=ENV, capture_output=True, text=True,
    )
    if out.returncode != 0:
        return None
    env = json.loads(out.stdout)["services"]["s"].get("environment") or {}
    # `config` writes each `$` of a value as `$$`; the container gets `$`.
    return {k: v.replace("$$", "$") for k, v in env.items() if v is not None}


def interpolatable(key):
    return (key[:1].isalpha() or key[:1] == "_") and all(
        c.isascii() and (c.isalnum() or c == "_") for c in key)


def ask(case):
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        (d / "case.env").write_bytes(case.read_bytes())
        (d / "compose.yml").write_text(
            "services:\n  s:\n    image: busybox\n    env_file: case.env\n")
        listed = config(d, ["--env-file", "/dev/null"])
        if listed is None:
            return {"refused": True}
        keys = [k for k in listed if interpolatable(k)]
        lines = "".join(f"      {k}: ${{{k}}}\n" for k in keys)
        (d / "compose.yml").write_text(
            "services:\n  s:\n    image: busybox\n    environment:\n"
            + (lines or "      NONE: none\n"))
        project = config(d, ["--env-file", "case.env"])
        if project is None:
            # The project's `.env` is also put into Compose's environment,
            # which refuses a key `env_file` lists (an empty one).
            return {"refused": True}
        for k in keys:
            if project.get(k) != listed[k]:
                sys.exit(f"{case.name}: env_file and --env-file disagree on {k}")
        return {"values": listed}


def main():
    version = subprocess.run([*COMPOSE, "version"], capture_output=True,
                             text=True).stdout.strip()
    cases = {c.stem: ask(c) for c in sorted((HERE / "cases").glob("*.env"))}
    doc = {"checked_with": version, "cases": cases}
    (HERE / "expected.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(cases)} cases written with {version}")


if __name__ == "__main__":
    main()
