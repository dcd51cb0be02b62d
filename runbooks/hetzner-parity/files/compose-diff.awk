# awk -f compose-diff.awk OLD NEW
# What replacing one compose configuration with another changes. OLD and NEW
# are outputs of `docker compose config --no-interpolate` (Compose v2 or
# docker-compose v1). Prints the services added, removed and changed (which
# keys; environment variables by name only, never a value) and the ports
# each service publishes, flagging those open on every interface.
# POSIX awk only (mawk, gawk, busybox), as found on Debian and Ubuntu.

function indent(s) { match(s, /^ */); return RLENGTH }
function unquote(s) { gsub(/^["']|["']$/, "", s); return s }
function keyof(s) { sub(/:.*$/, "", s); return s }
function valof(s) { if (s !~ /: /) return ""; sub(/^[^:]*: */, "", s); return unquote(s) }

function add_port(ip, pub, tgt,   s) {
    if (pub == "") return
    s = (ip == "" ? "0.0.0.0" : ip) ":" pub "->" tgt
    if (ip == "" || ip == "0.0.0.0" || ip == "::") s = s " (all interfaces)"
    ports[f, svc] = (ports[f, svc] == "" ? s : ports[f, svc] ", " s)
}
function flush_port() {
    if (item) add_port(pip, ppub, ptgt)
    item = 0
}
# Short syntax: [IP:]PUBLISHED:TARGET[/PROTO], IP maybe [v6] or bare v6.
function short_port(s,   n, p, i, ip) {
    s = unquote(s); sub(/\/.*$/, "", s)
    n = split(s, p, ":")
    if (n < 2) return
    if (n == 2) { add_port("", p[1], p[2]); return }
    ip = p[1]
    for (i = 2; i <= n - 2; i++) ip = ip ":" p[i]
    gsub(/^\[|\]$/, "", ip)
    add_port(ip, p[n - 1], p[n])
}
function long_field(s) {
    if (keyof(s) == "host_ip") pip = valof(s)
    else if (keyof(s) == "published") ppub = valof(s)
    else if (keyof(s) == "target") ptgt = valof(s)
}

FNR == 1 { flush_port(); f++; top = ""; svc = ""; key = "" }
/^[^ ]/ { flush_port(); top = $0; svc = ""; next }
top != "services:" { next }
{
    n = indent($0); line = substr($0, n + 1)
    if (line == "") next
    if (n == 2) {
        flush_port()
        svc = keyof(line); key = ""
        if (!((f, svc) in seen)) { seen[f, svc] = 1; names[f, ++count[f]] = svc }
        next
    }
    if (svc == "") next
    if (n == 4 && line !~ /^- /) {
        flush_port()
        key = keyof(line); envn = 0
        keys[f, svc, key] = 1
        if (!((svc, key) in anykey)) { anykey[svc, key] = 1; keylist[svc] = keylist[svc] " " key }
        block[f, svc, key] = line
        if (key == "image") image[f, svc] = valof(line)
        next
    }
    block[f, svc, key] = block[f, svc, key] "\n" line
    if (key == "environment") {
        if (envn == 0) envn = n
        if (n == envn) {
            var = keyof(line)
            env[f, svc, var] = line
            if (!((svc, var) in anyvar)) { anyvar[svc, var] = 1; varlist[svc] = varlist[svc] " " var }
        } else {
            env[f, svc, var] = env[f, svc, var] "\n" line
        }
    } else if (key == "ports") {
        if (line ~ /^- /) {
            flush_port()
            line = substr(line, 3)
            if (line ~ /^[a-z_]+:( |$)/) { item = 1; pip = ""; ppub = ""; ptgt = ""; long_field(line) }
            else short_port(line)
        } else if (item) long_field(line)
    }
}

function changes(svc,   out, nk, k, i, nv, v, vs, p) {
    out = ""
    nk = split(keylist[svc], k, " ")
    for (i = 1; i <= nk; i++) {
        if (block[1, svc, k[i]] == block[2, svc, k[i]]) continue
        if (k[i] == "environment") {
            vs = ""
            nv = split(varlist[svc], v, " ")
            for (p = 1; p <= nv; p++) {
                if (!((1, svc, v[p]) in env)) vs = vs " +" v[p]
                else if (!((2, svc, v[p]) in env)) vs = vs " -" v[p]
                else if (env[1, svc, v[p]] != env[2, svc, v[p]]) vs = vs " ~" v[p]
            }
            out = out "\n    environment:" (vs == "" ? " reordered" : vs)
        } else if (k[i] == "image") {
            out = out "\n    image: " (image[1, svc] == "" ? "(none)" : image[1, svc]) " -> " (image[2, svc] == "" ? "(none)" : image[2, svc])
        } else if (k[i] == "ports") {
            out = out "\n    ports: " (ports[1, svc] == "" ? "none" : ports[1, svc]) " -> " (ports[2, svc] == "" ? "none" : ports[2, svc])
        } else {
            out = out "\n    " k[i] ": " (!((1, svc, k[i]) in keys) ? "added" : !((2, svc, k[i]) in keys) ? "removed" : "changed")
        }
    }
    return out
}

END {
    flush_port()
    if (f < 2) { print "compose-diff: give the old and the new config" > "/dev/stderr"; exit 2 }
    added = removed = changed = same = 0
    for (i = 1; i <= count[2]; i++) {
        svc = names[2, i]
        if (!((1, svc) in seen)) {
            added++
            print "+ " svc " (new service)" (ports[2, svc] == "" ? "" : "\n    ports: " ports[2, svc])
        } else {
            c = changes(svc)
            if (c == "") same++
            else { changed++; print "~ " svc c }
        }
    }
    for (i = 1; i <= count[1]; i++) {
        svc = names[1, i]
        if (!((2, svc) in seen)) { removed++; print "- " svc " (removed)" }
    }
    print ""
    print "published ports after the change:"
    any = 0
    for (i = 1; i <= count[2]; i++) {
        svc = names[2, i]
        if (ports[2, svc] != "") { print "  " svc ": " ports[2, svc]; any = 1 }
    }
    if (!any) print "  none"
    print ""
    print added " added, " removed " removed, " changed " changed, " same " unchanged"
}
