#!/usr/bin/env python3
"""Regenerates expected.json from the real ansible-core (not run in CI).

    python3 tests/conformance/inventory/regenerate.py [BIN-DIR]

BIN-DIR holds ansible-inventory and ansible (ansible-core from PyPI; default:
the ones on PATH). For each cases/NAME/ (an inventory file `hosts` or
`hosts.yml`, maybe with group_vars/ and host_vars/ beside it):
1. `ansible-inventory -i FILE --list` gives each host's merged variables
   and groups; a non-zero exit or a failed parse is "refused";
2. `ansible -i FILE all -m ping` with a stand-in `ssh` first on PATH that
   records its arguments gives the address, port, user and key
   ansible-core itself passes to ssh (`-o Port=`, `-o User=`,
   `-o IdentityFile=`, the destination).
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
BIN = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else None


def tool(name):
    return str(BIN / name) if BIN else name


def inventory_file(case):
    for name in ("hosts", "hosts.yml"):
        if (case / name).exists():
            return case / name
    sys.exit(f"{case.name}: no hosts or hosts.yml")


def groups_of(doc):
    """host -> sorted groups it is in (children folded in), `all` left out."""
    def members(group, seen=()):
        body = doc.get(group, {})
        out = set(body.get("hosts", []))
        for child in body.get("children", []):
            if child not in seen:
                out |= members(child, seen + (group,))
        return out
    result = {}
    for group in doc:
        if group in ("_meta", "all"):
            continue
        for host in members(group):
            result.setdefault(host, set()).add(group)
    return {h: sorted(g) for h, g in result.items()}


def ssh_view(file, env):
    with tempfile.TemporaryDirectory() as d:
        log = pathlib.Path(d) / "log"
        fake = pathlib.Path(d) / "ssh"
        fake.write_text(
            "#!/bin/sh\n"
            f"{{ echo --call--; for a in \"$@\"; do echo \"$a\"; done; }} >> '{log}'\n"
            "exit 255\n")
        fake.chmod(0o755)
        env = dict(env, PATH=f"{d}:{env['PATH']}")
        subprocess.run([tool("ansible"), "-i", str(file), "all", "-m", "ping",
                        "-c", "ssh", "-f", "1"],
                       env=env, capture_output=True, text=True)
        calls = log.read_text().split("--call--\n")[1:] if log.exists() else []
    views = {}
    for call in calls:
        args = call.splitlines()
        view = {"port": None, "user": None, "key": None}
        i, dest = 0, None
        while i < len(args):
            a = args[i]
            if a == "-o" and i + 1 < len(args):
                k, _, v = args[i + 1].partition("=")
                if k == "Port":
                    view["port"] = v
                elif k == "User":
                    view["user"] = v.strip('"')
                elif k == "IdentityFile":
                    view["key"] = v.strip('"')
                i += 2
                continue
            if a.startswith("-"):
                i += 1
                continue
            dest = a
            break
        view["address"] = dest
        views.setdefault(dest, view)
    return views


def ask(case):
    file = inventory_file(case)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root"),
           "ANSIBLE_HOST_KEY_CHECKING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
           "ANSIBLE_NOCOLOR": "1"}
    out = subprocess.run([tool("ansible-inventory"), "-i", str(file), "--list"],
                         env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"file": file.name, "refused": True}
    doc = json.loads(out.stdout)
    hostvars = doc["_meta"]["hostvars"]
    groups = groups_of(doc)
    hosts = sorted(set(hostvars) | set(groups) | set(doc.get("ungrouped", {}).get("hosts", [])))
    ssh = ssh_view(file, env)
    result = {}
    for h in hosts:
        vars_ = hostvars.get(h, {})
        address = str(vars_.get("ansible_host", h))
        result[h] = {"vars": vars_, "groups": groups.get(h, []),
                     "ssh": ssh.get(address)}
    return {"file": file.name, "hosts": result}


def main():
    version = subprocess.run([tool("ansible"), "--version"], capture_output=True,
                             text=True).stdout.splitlines()[0]
    cases = {c.name: ask(c) for c in sorted((HERE / "cases").iterdir()) if c.is_dir()}
    doc = {"checked_with": version, "cases": cases}
    (HERE / "expected.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(cases)} cases written with {version}")


if __name__ == "__main__":
    main()
