#!/usr/bin/env python3
"""Compares runbook's reading of dotenv files nobody here wrote with Docker
Compose v2's (by hand, not in CI; the issue 21 reference comparison).

    python3 tests/conformance/dotenv/compare_reference.py FOLDER [RUNBOOK]

FOLDER holds .env files (e.g. compose-go's dotenv/fixtures and npm dotenv's
tests/.env*). For each, `docker compose config` with an empty environment
lists what Compose reads (an `env_file`), and a generated runbook (the file
as `env_files`, one step per key with `requires:`) writes what each step got
(base64). An empty value counts as agreeing when runbook holds the step (it
treats an empty value as missing); a file Compose refuses agrees when
runbook runs no step. Keys that cannot be secret names are skipped.
"""
import base64, json, os, pathlib, re, subprocess, sys, tempfile
RB = sys.argv[2] if len(sys.argv) > 2 else "target/debug/runbook"
RB = str(pathlib.Path(RB).resolve())
FOLDER = pathlib.Path(sys.argv[1])
ENV = {"PATH": "/usr/bin:/bin"}
def compose(case):
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        (d / "case.env").write_bytes(case.read_bytes())
        (d / "compose.yml").write_text("services:\n  s:\n    image: busybox\n    env_file: case.env\n")
        out = subprocess.run(["docker", "compose", "-p", "c", "--env-file", "/dev/null", "config", "--format", "json"], cwd=d, env=ENV, capture_output=True, text=True)
        if out.returncode: return None
        env = json.loads(out.stdout)["services"]["s"].get("environment") or {}
        return {k: v.replace("$$", "$") for k, v in env.items() if v is not None}
def runbook(case, keys):
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        (d / "case.env").write_bytes(case.read_bytes())
        names = [k for k in keys if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
        lines = ["name: ref", "env_files: [case.env]", "secrets:"] + [f"  {k}: {{}}" for k in names]
        if not names: lines.append("  NONE_AT_ALL: {}")
        lines += ["steps:"]
        for i, k in enumerate(names):
            run = f"printf '%s %s\\n' {k} \"$(printf '%s' \"$V\" | base64 -w0)\" >> " + str(d / "out")
            lines += [f"  - id: s{i}", f"    requires: [{k}]", f'    env: {{ V: "{{{{ secrets.{k} }}}}" }}', f"    run: {json.dumps(run)}"]
        if not names: lines += ["  - id: none", "    run: 'true'"]
        (d / "rb.yaml").write_text("\n".join(lines) + "\n")
        r = subprocess.run([RB, "run", "rb.yaml"], cwd=d, env=dict(ENV, HOME=str(d)), capture_output=True, text=True)
        if r.returncode not in (0, 3): return None, r.stdout + r.stderr
        if not (d / "out").exists(): return {}, names
        got = {}
        for l in (d / "out").read_text().splitlines():
            k, _, v = l.partition(" ")
            got[k] = base64.b64decode(v).decode()
        return got, names
total = agree = 0
for case in sorted(FOLDER.iterdir()):
    want = compose(case)
    if want is None:
        # refusal: does runbook hold / refuse?
        got, info = runbook(case, re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*[=:]", case.read_text(errors="replace"), re.M))
        total += 1
        if got == {}: agree += 1; print(f"{case.name}: Compose refuses; runbook holds its secrets")
        else: print(f"{case.name}: Compose refuses; runbook read {sorted(got) if got else info[-300:]}")
        continue
    got, names = runbook(case, list(want))
    if got is None:
        print(f"{case.name}: runbook did not run: {names[-400:]}"); total += len(want); continue
    for k, v in want.items():
        total += 1
        if k not in names: print(f"  {case.name} {k}: not a secret name here (skipped)"); total -= 1; continue
        if got.get(k) == v or (v == "" and k not in got): agree += 1
        else: print(f"  {case.name} {k}: compose {v!r} runbook {got.get(k)!r}")
print(f"{agree} of {total} agree")
