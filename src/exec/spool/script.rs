//! The shell code of detached steps, as the host runs it: the wrapper
//! that starts a step in its spool folder, the functions that follow it,
//! and the scripts that find, stop, remove and prepare spool folders; with
//! the names of those folders. Text only: it sends nothing.

use crate::exec::quote::sh_quote;

/// Where spool folders live, relative to the login user's home.
pub const ROOT: &str = ".runbook/spool";

/// The wrapper, run as `LC_ALL=C setsid SH -c "$_rbw" _rbw DIR NONCE BELL
/// UMASK SIZE BOOT LCALL` with the step's `export`s and script on its
/// standard input (`LC_ALL=C`: `setsid` loads no locale files; the step
/// gets the shell's `LC_ALL` back from LCALL, `x` and the value, or empty
/// when it had none; BOOT is the boot id the shell learned): no
/// size limit, and never in a command line or a file. Under 1 KiB, SIZE
/// says, they come in a here-document when the host's shell makes
/// here-documents pipes (dash, busybox, bash 5.1+; `_rbi` checks, as older
/// bash and mksh use temporary files), which saves the fork of a `printf`
/// for a pipe, and are read with the shell's own `read`, which saves a
/// `cat` process; otherwise `printf %s%s EXPORTS SCRIPT |` feeds them, and
/// above 1 KiB `cat` reads them, as `read` takes a byte at a time. It
/// claims the attempt's folder (or exits if another start did; a folder
/// removed as empty by another engine's cleanup just before is made
/// again), makes its
/// output files, records its process group and the boot it runs in, runs
/// the script with stdout and stderr into the spool, writes the exit
/// status, rings. When the folder cannot be written (a full disk), it
/// rings `n NONCE ERROR` instead, and the step does not run.
const WRAPPER: &str = concat!(
    "_rbw='_d=$1; _s=; if [ \"${5:-65536}\" -lt 1024 ]; then ",
    "while IFS= read -r _l || [ -n \"$_l\" ]; do _s=\"$_s$_l\n\"; done; else _s=$(cat); fi; ",
    "umask 077; set -C; _b=${6:-none}; ",
    "if ! { true >\"$_d/pgid\"; } 2>/dev/null && ! { [ ! -d \"$_d\" ] && { mkdir -p \"$_d\" || mkdir -p \"$_d\"; } 2>/dev/null && ",
    "{ true >\"$_d/pgid\"; } 2>/dev/null; }; then [ -e \"$_d/pgid\" ] || [ -z \"$3\" ] || ",
    "echo \"n $2 $({ true >\"$_d/pgid\"; } 2>&1)\" 1<>\"$3\"; exit 0; fi; set +C; ",
    "{ true >>\"$_d/out\" && true >>\"$_d/err\" && echo \"$$ $2 $_b\" >\"$_d/pgid\"; } 2>/dev/null || ",
    "{ [ -z \"$3\" ] || echo \"n $2 $(echo x | cat 2>&1 >\"$_d/probe\"; rm -f \"$_d/probe\")\" 1<>\"$3\"; exit 0; }; ",
    "exec >>\"$_d/out\" 2>>\"$_d/err\" </dev/null; [ -z \"$3\" ] || echo p 1<>\"$3\"; umask \"$4\"; ",
    "if [ -n \"$7\" ]; then LC_ALL=${7#x}; else unset LC_ALL; fi; ",
    "(eval \"unset _d _b _s _l; set --\n$_s\"); _c=$?; umask 077; echo \"$_c\" >\"$_d/status\"; [ -z \"$3\" ] || echo x 1<>\"$3\"'\n",
);

/// The shell functions for detached steps, defined once in a shell before
/// its first detached step.
///
/// `_rbi NONCE`: remembers the umask, makes the spool root and this
/// shell's bell with its ticker (which rings while the file `BELL.t` is not
/// empty: 20 ms, 50 ms, 100 ms, then every 200 ms; idle, it sleeps 200 ms
/// ten times, then 5 s at a time with `BELL.i` saying so, and `_rbd` wakes
/// it with SIGUSR1, sent only while /proc says the ticker is still this
/// shell's child (without /proc it wakes within 5 s; when `BELL.i` cannot
/// be written it keeps to 200 ms; ended, it ends its `sleep` too): an idle
/// shell costs one `sleep` every 5 s, not five a second, which a fleet's
/// hundred idle shells on one machine would feel; it ends with the
/// shell), learns the boot id, the shell's path (so that
/// `setsid` searches no `PATH`) and whether a here-document is a pipe here,
/// sweeps stale folders in the background.
/// When the spool root, the bell or its ticker file cannot be made, `_rbnm`
/// holds `make` and the host's error (and it runs again before the next
/// step, in case the host was fixed).
/// `_rbc TAG FILE OFFSET`: sends what FILE holds past OFFSET as a chunk
/// (at most 1 MiB; `_rbmore` says there is more); the new offset in `_rbm`.
/// `_rbd NONCE BASE ATTEMPT OUT ERR SCRIPT EXPORTS`: starts SCRIPT in
/// BASE/ATTEMPT unless it was started there already (no SCRIPT: only
/// follow), then follows it from the byte offsets OUT and ERR to its end.
/// A spool that cannot be made or written (the ticker file, the attempt's
/// folder, or its files, which the wrapper reports on the bell) ends it at
/// once with `\036X NONCE nospool make|write ERROR`, the step not started.
/// `_rbsweep`: removes run folders untouched for a week whose steps no
/// longer run (one `find` lists them: a host's sweep costs two `find`s
/// however many run folders its spool holds; a name with a newline is never
/// one of ours and is left alone), bells of shells that are gone (named
/// `bell.PID.NONCE`), and bells a day old.
const FUNCTIONS: &str = r#"_rbi() {
  _rbu=$(umask); umask 077; _rbb= _rbnm=
  if ! command -v setsid >/dev/null 2>&1; then :
  elif ! { [ -d "$HOME/.runbook/spool" ] || mkdir -p "$HOME/.runbook/spool" 2>/dev/null; }; then _rbnm="make $(mkdir -p "$HOME/.runbook/spool" 2>&1)"
  else
    _rbb="$HOME/.runbook/spool/bell.$$.$1"; [ ! -e "$_rbb" ] || rm -f "$_rbb"; _rbtf=$_rbb.t _rbil=$_rbb.i
    if ! mkfifo "$_rbb" 2>/dev/null; then _rbnm="make $(mkfifo "$_rbb" 2>&1)"; _rbb=
    elif ! { true >"$_rbtf"; } 2>/dev/null; then _rbnm="make $({ true >"$_rbtf"; } 2>&1)"; rm -f "$_rbb"; _rbb=
    else
      exec 6<>"$_rbb"
      (trap '_w=1' USR1; trap '[ -z "$_s" ] || kill $_s 2>/dev/null; exit 0' TERM; _s= _n=0 _i=0; while kill -0 $$ 2>/dev/null; do
        if [ -s "$_rbtf" ]; then echo t >&6 || exit; case $_n in 0) _t=0.02;; 1) _t=0.05;; 2) _t=0.1;; *) _t=0.2;; esac; _n=$((_n + 1)) _i=0
        elif [ "$_i" -lt 10 ]; then _n=0 _t=0.2 _i=$((_i + 1))
        else
          _n=0 _w= _t=0.2; { echo 1 >"$_rbil"; } 2>/dev/null && [ -s "$_rbil" ] || { LC_ALL=C sleep $_t || exit; continue; }
          LC_ALL=C sleep 5 & _s=$!; if [ -s "$_rbtf" ] || [ -n "$_w" ]; then _x=129; else wait $_s; _x=$?; fi
          if [ "$_x" -gt 128 ]; then { kill $_s; wait $_s; } 2>/dev/null; elif [ "$_x" != 0 ]; then { true >"$_rbil"; } 2>/dev/null; exit; fi
          _s=; { true >"$_rbil"; } 2>/dev/null; continue
        fi
        LC_ALL=C sleep $_t || exit
      done) </dev/null >/dev/null 2>&1 3>&- &
      _rbtk=$!
      trap 'kill "$_rbtk" 2>/dev/null; rm -f "$_rbb" "$_rbtf" "$_rbil"' EXIT
    fi
  fi
  umask "$_rbu"
  _rbboot=none; { read -r _rbboot </proc/sys/kernel/random/boot_id; } 2>/dev/null
  _rbsh=$(command -v sh 2>/dev/null); case $_rbsh in /*) ;; *) _rbsh=sh;; esac
  _rbhd=; { [ -p /dev/stdin ] && _rbhd=1; } <<_RBHD
x
_RBHD
  _rbsweep </dev/null >/dev/null 2>&1 3>&- 6>&- &
}
_rbsweep() {
  find "$HOME/.runbook/spool" -mindepth 1 -maxdepth 1 -type d -mmin +10080 ! -name '*
*' 2>/dev/null | while IFS= read -r _r; do
    _r=$_r/; [ -d "$_r" ] && [ ! -h "${_r%/}" ] || continue
    _l=
    for _f in "$_r"*/*/pgid; do
      [ -s "$_f" ] || continue; [ -s "${_f%pgid}status" ] && continue
      read -r _p _x _t <"$_f"; case $_p in ''|0|*[!0-9]*) continue;; esac
      [ "$_t" = "$_rbboot" ] && kill -0 -"$_p" 2>/dev/null && _l=1
    done
    [ -n "$_l" ] || rm -rf "$_r"
  done
  for _f in "$HOME"/.runbook/spool/bell.*.*; do
    case $_f in *.t) continue;; esac
    _p=${_f#"$HOME"/.runbook/spool/bell.}; _p=${_p%%.*}
    case $_p in ''|*[!0-9]*) continue;; esac
    kill -0 "$_p" 2>/dev/null || rm -f "$_f" "$_f.t"
  done
  find "$HOME/.runbook/spool" -maxdepth 1 -name 'bell.*' -mmin +1440 -exec rm -f {} + 2>/dev/null
}
_rbc() {
  _rbm=$3; [ -s "$2" ] || return 0
  _rbs=$(LC_ALL=C wc -c <"$2") || return 0; set -- "$1" "$2" "$3" $_rbs
  [ "${4:-0}" -gt "$3" ] 2>/dev/null || return 0
  _rbl=$(($4 - $3)); [ "$_rbl" -gt 1048576 ] && { _rbl=1048576; _rbmore=1; }
  printf '\036C%s %s %s\n' "$_rbn" "$1" "$_rbl"
  LC_ALL=C tail -c +$(($3 + 1)) "$2" | LC_ALL=C head -c "$_rbl"
  _rbm=$(($3 + _rbl))
}
_rbd() {
  [ -n "${_rbb:-}" ] || _rbi "$1"
  _rbn=$1 _rbo=$4 _rbe=$5 _rbp= _rbk=0 _rbf= _rbdir=$HOME/$2/$3 _rbpoll=
  if [ -z "$_rbb" ]; then
    if [ -n "$_rbnm" ]; then printf '\036X%s nospool %s\n' "$1" "$_rbnm"; else printf '\036X%s nosetsid\n' "$1"; fi
    return
  fi
  if { echo 1 >"$_rbtf"; } 2>/dev/null; then
    [ ! -s "$_rbil" ] || { { read -r _rbq _rbq _rbq _rbpp _rbq <"/proc/$_rbtk/stat"; } 2>/dev/null && [ "$_rbpp" = $$ ] && kill -USR1 "$_rbtk" 2>/dev/null; }
  else
    if [ -n "$6" ]; then printf '\036X%s nospool write %s\n' "$1" "$(echo 1 | cat 2>&1 >"$_rbtf")"; return; fi
    _rbpoll=1
  fi
  if [ ! -s "$_rbdir/pgid" ] && [ -n "$6" ]; then
    if [ ! -d "$_rbdir" ]; then
      umask 077
      if ! mkdir -p "$_rbdir" 2>/dev/null && ! mkdir -p "$_rbdir" 2>/dev/null; then
        _rbnm=$(mkdir -p "$_rbdir" 2>&1); umask "$_rbu"; true >"$_rbtf"
        printf '\036X%s nospool make %s\n' "$1" "$_rbnm"; return
      fi
      umask "$_rbu"
    fi
    if [ -n "$_rbhd" ] && [ $((${#6} + ${#7})) -lt 1024 ]; then
      LC_ALL=C setsid "$_rbsh" -c "$_rbw" _rbw "$_rbdir" "$1" "$_rbb" "$_rbu" $((${#6} + ${#7})) "$_rbboot" "${LC_ALL+x$LC_ALL}" <<_RBEOF >/dev/null 2>&1 3>&- 6>&- &
$7$6
_RBEOF
    else
      printf %s%s "$7" "$6" | LC_ALL=C setsid "$_rbsh" -c "$_rbw" _rbw "$_rbdir" "$1" "$_rbb" "$_rbu" $((${#6} + ${#7})) "$_rbboot" "${LC_ALL+x$LC_ALL}" >/dev/null 2>&1 3>&- 6>&- &
    fi
  fi
  while :; do
    if [ -z "$_rbp" ] && [ -s "$_rbdir/pgid" ]; then
      read -r _rbp _rbby _rbbt <"$_rbdir/pgid"
      if [ "$_rbp" = 0 ]; then _rbf=gone; break; fi
      [ "$_rbby" = "$1" ] && _rbby=started || _rbby=attached
      printf '\036P%s %s %s\n' "$1" "$_rbp" "$_rbby"
    fi
    _rbf=; [ -s "$_rbdir/status" ] && _rbf=1
    _rbmore=
    if [ -n "$_rbp" ]; then _rbc O "$_rbdir/out" "$_rbo"; _rbo=$_rbm; _rbc E "$_rbdir/err" "$_rbe"; _rbe=$_rbm; fi
    [ -n "$_rbmore" ] && continue
    [ -n "$_rbf" ] && break
    if [ -n "$_rbp" ]; then
      { [ "$_rbbt" = "$_rbboot" ] && kill -0 -"$_rbp" 2>/dev/null; } || [ -s "$_rbdir/status" ] || { [ "$_rbbt" = "$_rbboot" ] && _rbf=killed || _rbf=lost; break; }
    else
      _rbk=$((_rbk + 1)); [ "$_rbk" -gt 50 ] && { _rbf=lost; break; }
    fi
    if [ -n "$_rbpoll" ]; then sleep 0.2; continue; fi
    read -r _rbx <&6
    case $_rbx in "n $1 "*) _rbnm=${_rbx#"n $1 "}; _rbf=nospool; break;; esac
  done
  true >"$_rbtf"
  case $_rbf in
    lost|gone|killed) printf '\036X%s %s\n' "$1" "$_rbf";;
    nospool) printf '\036X%s nospool write %s\n' "$1" "$_rbnm";;
    *) read -r _rbx <"$_rbdir/status"; printf '\036X%s %s\n' "$1" "$_rbx";;
  esac
}
"#;

/// Everything a shell needs for detached steps, sent once.
pub fn prelude() -> String {
    format!("{WRAPPER}{FUNCTIONS}")
}

/// A step id as a folder name: `[a-z0-9_-]` kept, anything else (`@` of a
/// fleet instance, `.` of a host name) as `=XX` per byte, so two ids never
/// share a folder.
pub fn folder_name(step: &str) -> String {
    let mut out = String::with_capacity(step.len());
    for b in step.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(b as char),
            _ => out.push_str(&format!("={b:02x}")),
        }
    }
    out
}

/// A key that no other engine process uses: time, pid and a counter, hashed.
pub fn engine_key() -> String {
    use sha2::Digest;
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().to_string())
        .unwrap_or_default();
    let h = sha2::Sha256::digest(format!("{t}-{}-{host}", std::process::id()).as_bytes());
    format!("{h:x}")[..12].to_string()
}

/// The spool folder of a step of a run (relative to the home), under which
/// each attempt has its numbered folder.
pub fn base(run_id: i64, key: &str, step: &str) -> String {
    format!("{ROOT}/{run_id}-{key}/{}", folder_name(step))
}

/// The command that starts (or, with no script, only follows) an attempt
/// and follows it from the given byte offsets.
pub fn follow_command(
    nonce: &str,
    base: &str,
    attempt: i64,
    offsets: (u64, u64),
    start: Option<(&str, &str)>,
) -> String {
    let (script, exports) = start.unwrap_or(("", ""));
    format!(
        "_rbd {nonce} {} {attempt} {} {} {} {}\n",
        sh_quote(base),
        offsets.0,
        offsets.1,
        sh_quote(script),
        sh_quote(exports)
    )
}

/// A script that finds the latest attempt of a step started on the host at
/// or after `attempt`. It prints `found N`, or `gone N` when attempt N never
/// started there (or its folder is gone); then it marks N so that a start
/// of N still on its way does not run.
/// A folder that another engine's cleanup at connect removes as empty
/// while it is being made is made again (up to five tries).
pub fn probe_script(base: &str, attempt: i64) -> String {
    format!(
        r#"b="$HOME"/{base}; a={attempt}
for x in "$b"/*/pgid; do [ -s "$x" ] || continue; x=${{x%/pgid}}; x=${{x##*/}}; case $x in ''|*[!0-9]*) continue;; esac; [ "$x" -gt "$a" ] && a=$x; done
d=$b/$a
i=0; while [ ! -e "$d/pgid" ] && [ $i -lt 5 ]; do i=$((i+1)); umask 077; mkdir -p "$d" 2>/dev/null; set -C; if {{ echo "0 gone none" >"$d/pgid"; }} 2>/dev/null; then echo "gone $a"; exit 0; fi; set +C; done
[ -e "$d/pgid" ] || {{ mkdir -p "$d"; exit 1; }}; read -r p x y <"$d/pgid"; if [ "$p" = 0 ]; then echo "gone $a"; else echo "found $a"; fi
"#,
        base = sh_quote(base)
    )
}

/// A script that stops every attempt of a step still running on the host
/// (its whole process group: SIGTERM, then SIGKILL after `grace` seconds),
/// keeps a start still on its way from running, and removes the step's
/// spool folder. A start that has claimed its folder (an empty `pgid`) but
/// not yet recorded its group is waited for (up to 1 s), then stopped too.
pub fn stop_script(base: &str, grace: u32) -> String {
    format!(
        r#"b="$HOME"/{base}; bt=none; {{ read -r bt </proc/sys/kernel/random/boot_id; }} 2>/dev/null
set -C; for d in "$b"/*/; do [ -d "$d" ] && {{ echo "0 stopped none" >"${{d}}pgid"; }} 2>/dev/null; done; set +C
for f in "$b"/*/pgid; do w=0; while [ -e "$f" ] && [ ! -s "$f" ] && [ $w -lt 20 ]; do sleep 0.05; w=$((w+1)); done; done
g=; for f in "$b"/*/pgid; do [ -s "$f" ] || continue; [ -s "${{f%pgid}}status" ] && continue; read -r p x t <"$f"; case $p in ''|0|*[!0-9]*) continue;; esac; [ "$t" = "$bt" ] && g="$g $p"; done
for p in $g; do kill -TERM -"$p" 2>/dev/null; done
i=0; while [ -n "$g" ] && [ $i -lt {ticks} ]; do l=; for p in $g; do kill -0 -"$p" 2>/dev/null && l=1; done; [ -n "$l" ] || break; sleep 0.1; i=$((i+1)); done
for p in $g; do kill -KILL -"$p" 2>/dev/null; done
rm -rf "$b"; rmdir "${{b%/*}}" 2>/dev/null; true
"#,
        base = sh_quote(base),
        ticks = grace * 10
    )
}

/// A command that removes spool folders whose results are committed: in
/// the background while steps run (immune to the SIGTERM that ends a shell
/// whose engine died) or, when the pool closes, in the foreground, with the
/// run folders left empty.
pub fn discard_command(bases: &[String], background: bool) -> String {
    if bases.is_empty() {
        return String::new();
    }
    let words = |list: &mut dyn Iterator<Item = &str>| {
        list.map(|w| format!(" {}", sh_quote(w)))
            .collect::<String>()
    };
    let rm = words(&mut bases.iter().map(String::as_str));
    if background {
        // One process: the subshell becomes `rm`.
        return format!(
            "( trap '' TERM HUP; LC_ALL=C; export LC_ALL; cd && exec rm -rf --{rm} ) </dev/null >/dev/null 2>&1 3>&- 6>&- &\n"
        );
    }
    // And the run folders, which go once empty.
    let mut runs: Vec<&str> = bases.iter().filter_map(|b| run_folder(b)).collect();
    runs.sort_unstable();
    runs.dedup();
    let rmdir = words(&mut runs.into_iter());
    format!("( cd && rm -rf --{rm} && rmdir --{rmdir} 2>/dev/null; true )\n")
}

/// Whether `base` (from the state) names a folder under the spool root and
/// nothing else: relative, no `..`, no empty part. Folders made by
/// [`base`] always are.
pub fn is_spool_folder(base: &str) -> bool {
    base.strip_prefix(ROOT)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != "..")
        })
}

/// The command a new connection to a host runs before anything else
/// there: removes the given spool folders (results an earlier engine
/// committed, of steps since reset or replaced, that it may not have
/// removed: it was killed first) and every empty folder at the spool's
/// three levels (attempt, step, run: what a killed engine prepared and
/// never used). A start about to use an empty folder it removes makes it
/// again (see `WRAPPER` and `_rbd`).
pub fn cleanup_command(bases: &[String], keep: &[String]) -> String {
    let mut cmd = String::from("cd || exit 0\n");
    if !bases.is_empty() {
        cmd.push_str("rm -rf --");
        for b in bases {
            cmd.push(' ');
            cmd.push_str(&sh_quote(b));
        }
        cmd.push('\n');
    }
    // `find` (not a glob) so that no link is followed out of the spool;
    // this engine's own run folders (`keep`) are left alone: its steps on
    // another host with the same home may be making theirs right now.
    cmd.push_str(&format!(
        "find {ROOT} -mindepth 1 -maxdepth 3 -type d -empty"
    ));
    for k in keep {
        let q = sh_quote(k);
        cmd.push_str(&format!(" ! -path {q} ! -path {q}/\\*"));
    }
    cmd.push_str(" -delete 2>/dev/null; true\n");
    cmd
}

/// [`cleanup_command`] as a new connection's first shell is sent it: in a
/// background subshell that ignores the shell's SIGTERM and writes nowhere,
/// sent ahead of that shell's first command, so that reaching a host waits
/// for no reply of it. Steps of this engine are safe beside it: their run
/// folders are in `keep`, and the folders it removes are earlier engines'.
pub fn cleanup_preamble(bases: &[String], keep: &[String]) -> String {
    format!(
        "( trap '' TERM HUP\n{}) </dev/null >/dev/null 2>&1 3>&- 6>&- &\n",
        cleanup_command(bases, keep)
    )
}

/// The run folder (`ROOT/<run>-<key>`) a spool folder is in.
pub fn run_folder(folder: &str) -> Option<&str> {
    let rest = folder.strip_prefix(ROOT)?.strip_prefix('/')?;
    let run = rest.split('/').next().filter(|r| !r.is_empty())?;
    Some(&folder[..ROOT.len() + 1 + run.len()])
}

/// A command that makes, in the background, the attempt folders of steps
/// about to run (so that starting one costs no `mkdir`).
pub fn prepare_command(dirs: &[String]) -> String {
    if dirs.is_empty() {
        return String::new();
    }
    let mut cmd = String::from("(umask 077; cd && mkdir -p --");
    for d in dirs {
        cmd.push(' ');
        cmd.push_str(&sh_quote(d));
    }
    cmd.push_str(") </dev/null >/dev/null 2>&1 3>&- 6>&- &\n");
    cmd
}

/// A command that removes the prepared attempt folders no step used (only
/// empty folders go).
pub fn unprepare_command(dirs: &[String]) -> String {
    if dirs.is_empty() {
        return String::new();
    }
    let mut cmd = String::from("cd && rmdir --");
    for d in dirs {
        let parent = d.rsplit_once('/').map(|(p, _)| p).unwrap_or(d);
        let run = parent.rsplit_once('/').map(|(p, _)| p).unwrap_or(parent);
        for path in [d.as_str(), parent, run] {
            cmd.push(' ');
            cmd.push_str(&sh_quote(path));
        }
    }
    cmd.push_str(" 2>/dev/null; true\n");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_code_parses() {
        if let Ok(path) = std::env::var("RUNBOOK_DUMP_PRELUDE") {
            std::fs::write(path, prelude()).unwrap();
        }
        for script in [
            prelude(),
            probe_script("a'b/c", 2),
            stop_script("x", 2),
            discard_command(&["a b".into()], true),
            discard_command(&["a b".into()], false),
            cleanup_command(
                &[".runbook/spool/1-k/a b".into()],
                &[".runbook/spool/2-k".into()],
            ),
            cleanup_preamble(
                &[".runbook/spool/1-k/a b".into()],
                &[".runbook/spool/2-k".into()],
            ),
            prepare_command(&["a/b/1".into()]),
            unprepare_command(&["a/b/1".into()]),
            follow_command("n", "b", 1, (0, 0), Some(("echo 'hi'", "A=1"))),
        ] {
            let out = std::process::Command::new("sh")
                .arg("-n")
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(out.status.success(), "{script}\n{out:?}");
        }
    }

    /// A start that claimed its attempt (`pgid` made, still empty) when the
    /// stop came, and records its process group just after: stopped too,
    /// not left running with its folder gone.
    #[test]
    fn a_stop_between_a_start_claiming_and_recording_its_group_stops_it() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("s/1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pgid"), "").unwrap();
        // The start: its own session; 0.2 s after the claim, its group.
        let start = std::process::Command::new("setsid")
            .args([
                "sh",
                "-c",
                "b=none; read -r b </proc/sys/kernel/random/boot_id; sleep 0.2; \
                 echo \"$$ n $b\" >\"$0/pgid\"; exec sleep 30",
            ])
            .arg(&dir)
            .spawn()
            .unwrap();
        let pid = start.id() as i32;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(stop_script("s", 1))
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut start = start;
        let mut ended = false;
        for _ in 0..50 {
            if start.try_wait().unwrap().is_some() {
                ended = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if !ended {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = start.wait();
        }
        assert!(ended, "the start still ran after the stop");
        assert!(!home.path().join("s").exists());
    }

    /// An idle shell's ticker goes to its long sleep (`BELL.i` says so),
    /// and the next step wakes it: its output comes while it runs, not at
    /// its end.
    #[test]
    fn an_idle_ticker_sleeps_long_and_the_next_step_wakes_it() {
        use std::io::{BufRead, Write};
        let home = tempfile::tempdir().unwrap();
        let mut sh = std::process::Command::new("sh")
            .arg("-s")
            .env("HOME", home.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = sh.stdin.take().unwrap();
        let mut lines = std::io::BufReader::new(sh.stdout.take().unwrap()).lines();
        let first = follow_command("n1", "s/a", 1, (0, 0), Some(("true", "")));
        write!(stdin, "{}{first}", prelude()).unwrap();
        let until = |lines: &mut dyn Iterator<Item = std::io::Result<String>>, end: &str| {
            let mut seen = Vec::new();
            for line in &mut *lines {
                let line = line.unwrap();
                seen.push((std::time::Instant::now(), line.clone()));
                if line.starts_with(end) {
                    break;
                }
            }
            seen
        };
        until(&mut lines, "\u{1e}Xn1");
        std::thread::sleep(std::time::Duration::from_millis(3500));
        let spool = home.path().join(ROOT);
        let idle: Vec<_> = std::fs::read_dir(&spool)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".i"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert_eq!(idle, ["1\n"], "the ticker is not in its long sleep");
        let script = "echo a; sleep 0.6; echo b";
        let second = follow_command("n2", "s/b", 1, (0, 0), Some((script, "")));
        stdin.write_all(second.as_bytes()).unwrap();
        let seen = until(&mut lines, "\u{1e}Xn2");
        let at = |text: &str| seen.iter().find(|(_, l)| l == text).map(|(t, _)| *t);
        let (a, end) = (at("a").unwrap(), seen.last().unwrap().0);
        assert!(end - a > std::time::Duration::from_millis(300), "{seen:?}");
        drop(stdin);
        sh.wait().unwrap();
    }

    #[test]
    fn only_folders_under_the_spool_root_are_removed_at_connect() {
        assert!(is_spool_folder(&base(3, "k", "a@web3")));
        for bad in [
            "",
            ".runbook/spool",
            ".runbook/spool/",
            ".runbook/spool/../x",
            ".runbook/spool/a//b",
            "/.runbook/spool/a",
            ".runbook/spoolx/a",
            "x/.runbook/spool/a",
        ] {
            assert!(!is_spool_folder(bad), "{bad:?}");
        }
    }

    /// What a new connection removes: the given folders and empty ones,
    /// never this engine's run folders, never through a link.
    #[test]
    fn the_cleanup_at_connect_removes_left_and_empty_folders_only() {
        let home = tempfile::tempdir().unwrap();
        let root = home.path().join(ROOT);
        for d in [
            "1-old/a/1",
            "1-old/b/1",
            "1-old/c/1",
            "2-mine/d/1",
            "3-full/e/1",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("1-old/a/1/out"), "secret\n").unwrap();
        std::fs::write(root.join("3-full/e/1/out"), "running\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("empty")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("4-link")).unwrap();
        let cmd = cleanup_command(
            &[format!("{ROOT}/1-old/a")],
            &[run_folder(&format!("{ROOT}/2-mine/d/1"))
                .unwrap()
                .to_string()],
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(!root.join("1-old").exists());
        assert!(root.join("2-mine/d/1").is_dir());
        assert!(root.join("3-full/e/1/out").exists());
        assert!(outside.path().join("empty").is_dir());
        assert_eq!(run_folder("x/1-k/a"), None);
    }

    #[test]
    fn folder_names_never_collide_and_stay_plain() {
        assert_eq!(folder_name("deploy_1-a"), "deploy_1-a");
        assert_eq!(folder_name("deploy@web1.lan"), "deploy=40web1=2elan");
        assert_ne!(folder_name("a@b"), folder_name("a=40b"));
        assert!(base(7, "k", "x/../y").ends_with("/7-k/x=2f=2e=2e=2fy"));
    }
}
