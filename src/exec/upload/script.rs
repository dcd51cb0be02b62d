//! The scripts an upload sends a host, and the reading of their answers:
//! the hashes and modes of the destinations, and the writes of the changed
//! files. Text only: it sends nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::FileToWrite;
use crate::exec::quote::sh_quote;

/// What is known of a destination on the host: its hash and mode.
pub(super) type Existing = Option<(String, Option<u32>)>;

/// A script that prints `E I` for each destination I that is a file, then
/// the hashes of those files (one `sha256sum`), then their modes (one
/// `stat`): a constant number of processes however many files there are.
pub fn hash_script(files: &[FileToWrite]) -> String {
    let mut script = String::from("i=0; set --\nfor f in");
    for f in files {
        script.push(' ');
        script.push_str(&sh_quote(&f.dest));
    }
    script.push_str(
        "; do if [ -f \"$f\" ]; then set -- \"$@\" \"$f\"; echo \"E $i\"; fi; i=$((i+1)); done\n\
         echo '#H'\n\
         if [ $# -gt 0 ]; then sha256sum -- \"$@\" 2>/dev/null; echo '#M'; stat -c %a -- \"$@\" 2>/dev/null; else echo '#M'; fi\n\
         echo '#END'\n",
    );
    script
}

/// The output of [`hash_script`], by file index. When a file could not be
/// read (fewer hashes or modes than files), nothing is trusted: every file
/// counts as changed and is written again, which is always safe.
pub fn parse_hashes(out: &[u8], count: usize) -> Vec<Existing> {
    let text = String::from_utf8_lossy(out);
    let mut lines = text.lines();
    let present: Vec<usize> = lines
        .by_ref()
        .take_while(|l| *l != "#H")
        .filter_map(|l| l.strip_prefix("E ")?.parse().ok())
        .collect();
    let hashes: Vec<String> = lines
        .by_ref()
        .take_while(|l| *l != "#M")
        .map(|l| {
            // sha256sum escapes an odd name and marks its line with `\`.
            let l = l.strip_prefix('\\').unwrap_or(l);
            l.chars().take(64).collect()
        })
        .collect();
    let modes: Vec<Option<u32>> = lines
        .take_while(|l| *l != "#END")
        .map(|l| u32::from_str_radix(l.trim(), 8).ok())
        .collect();
    let mut existing = vec![None; count];
    if hashes.len() == present.len() && modes.len() == present.len() {
        for ((i, hash), mode) in present.into_iter().zip(hashes).zip(modes) {
            if let Some(slot) = existing.get_mut(i) {
                *slot = Some((hash, mode));
            }
        }
    }
    existing
}

/// Ends the here-documents of [`write_script`]; base64 text never holds `_`.
const DATA_END: &str = "RUNBOOK_DATA_END";

/// One `sh` script that writes every file, with as few processes as it
/// can. First, in one block: the folders are made, an empty temporary file
/// is created beside each destination (no process) and the modes are set
/// on them per group. Then, file by file, its content is decoded from a
/// base64 here-document into its temporary file (truncating keeps the
/// mode; a mode without `u+w` or with set-ID bits is set only now, as
/// writing would be refused or clear them) and at once renamed over its
/// destination, so a reader never sees
/// a partial file, and a transfer cut short keeps every file already in
/// place. It prints `ok I` after file I is in place, `fail I` when file I
/// could not be written, and leaves no temporary file behind however it
/// ends.
///
/// Every part is one `{ ... }` group: `sh` reads its input as it runs, and
/// at an early end of input it would run a half-received command line (a
/// `mv` to a truncated name) or a here-document cut short; a group cut
/// short is a syntax error instead, and nothing of it runs.
pub(super) fn write_script(files: &[(&FileToWrite, Option<u32>)]) -> String {
    // '…/.NAME.runbook-tmp.'$$ : quoted as data, the shell's pid appended.
    let temps: Vec<String> = files
        .iter()
        .map(|(f, _)| {
            let (dir, name) = split(&f.dest);
            format!("{}$$", sh_quote(&format!("{dir}/.{name}.runbook-tmp.")))
        })
        .collect();
    let mut script = setup_block(files, &temps);
    for (i, (f, mode)) in files.iter().enumerate() {
        script.push_str(&file_block(i, f, *mode, &temps[i]));
    }
    script
}

/// A destination's folder and name.
fn split(dest: &str) -> (String, String) {
    match dest.rsplit_once('/') {
        Some(("", name)) => ("/".to_string(), name.to_string()),
        Some((dir, name)) => (dir.to_string(), name.to_string()),
        None => (".".to_string(), dest.to_string()),
    }
}

/// A mode the login user could not write the content under (no `u+w`) or
/// that writing would clear (set-user-ID, set-group-ID): set only once the
/// content is in.
fn late(mode: u32) -> bool {
    mode & 0o200 == 0 || mode & 0o6000 != 0
}

/// The first block of [`write_script`]: the clean-up of the temporary
/// files, the folders, the check that no folder is in a file's way, the
/// empty temporary files and their modes.
fn setup_block(files: &[(&FileToWrite, Option<u32>)], temps: &[String]) -> String {
    let dirs: BTreeSet<String> = files.iter().map(|(f, _)| split(&f.dest).0).collect();
    let mut script = String::from("{\nclean() {\n");
    for chunk in temps.chunks(200) {
        script.push_str(&format!("  rm -f -- {}\n", chunk.join(" ")));
    }
    // Also when the script is cut short (the connection dropped or the
    // engine stopped mid-transfer): the shell meets the end of its input,
    // exits, and removes the temporary files. A closed channel must not
    // kill the shell (SIGPIPE on its next `echo`) before it has cleaned up.
    script.push_str("}\ntrap clean EXIT\ntrap '' PIPE\n");
    for chunk in dirs.iter().collect::<Vec<_>>().chunks(200) {
        let quoted: Vec<String> = chunk.iter().map(|d| sh_quote(d)).collect();
        script.push_str(&format!(
            "mkdir -p -- {} || {{ echo 'fail folders'; exit 1; }}\n",
            quoted.join(" ")
        ));
    }
    // `mv` would put the file inside a folder (or a link to one) in the way.
    for (i, (f, _)) in files.iter().enumerate() {
        script.push_str(&format!(
            "if [ -d {d} ]; then echo 'fail {i}'; echo 'it is a folder' >&2; exit 1; fi\n",
            d = sh_quote(&f.dest)
        ));
    }
    for (i, temp) in temps.iter().enumerate() {
        script.push_str(&format!(
            "true > {temp} || {{ echo 'fail {i}'; exit 1; }}\n"
        ));
    }
    script.push_str(&early_modes(files, temps));
    script.push_str("}\n");
    script
}

/// The `chmod`s of the empty temporary files, one per mode: a late mode
/// (see [`late`]) with `u+w` and without the set-ID bits for now (one more
/// process per file, for these only, once the content is in).
fn early_modes(files: &[(&FileToWrite, Option<u32>)], temps: &[String]) -> String {
    let mut by_mode: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, (_, mode)) in files.iter().enumerate() {
        if let Some(m) = mode {
            let early = if late(*m) { (m & 0o777) | 0o200 } else { *m };
            by_mode.entry(early).or_default().push(i);
        }
    }
    let mut script = String::new();
    for (mode, indexes) in by_mode {
        for chunk in indexes.chunks(200) {
            let names: Vec<&str> = chunk.iter().map(|&i| temps[i].as_str()).collect();
            script.push_str(&format!(
                "chmod {mode:o} {} || {{ echo 'fail {}'; exit 1; }}\n",
                names.join(" "),
                chunk[0]
            ));
        }
    }
    script
}

/// One file of [`write_script`]: its content decoded into its temporary
/// file, its late mode, the rename, `ok I`.
fn file_block(i: usize, f: &FileToWrite, mode: Option<u32>, temp: &str) -> String {
    use base64::Engine as _;
    let chmod = match mode {
        Some(m) if late(m) => format!("chmod {m:o} {temp} && "),
        _ => String::new(),
    };
    let mut block = format!(
        "{{ base64 -d > {temp} <<'{DATA_END}' && {chmod}mv -f -- {temp} {d} && echo 'ok {i}' || {{ echo 'fail {i}'; exit 1; }}\n",
        d = sh_quote(&f.dest)
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(&f.bytes);
    for chunk in encoded.as_bytes().chunks(76) {
        block.push_str(&String::from_utf8_lossy(chunk));
        block.push('\n');
    }
    block.push_str(DATA_END);
    block.push_str("\n}\n");
    block
}
#[cfg(test)]
mod tests {
    use super::parse_hashes;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn hashes_and_modes_go_to_the_files_that_exist() {
        let out = format!("E 0\nE 2\n#H\n{H1}  /a\n\\{H2}  /odd\\nname\n#M\n644\n600\n#END\n");
        let got = parse_hashes(out.as_bytes(), 3);
        assert_eq!(got[0], Some((H1.to_string(), Some(0o644))));
        assert_eq!(got[1], None);
        assert_eq!(got[2], Some((H2.to_string(), Some(0o600))));
    }

    #[test]
    fn a_file_that_could_not_be_read_makes_every_file_count_as_changed() {
        // Two files exist, but only one hash came back.
        let out = format!("E 0\nE 1\n#H\n{H1}  /a\n#M\n644\n600\n#END\n");
        assert_eq!(parse_hashes(out.as_bytes(), 2), vec![None, None]);
    }
}
