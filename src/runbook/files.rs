//! The files of an upload's source as they are on disk, for validation
//! (which vars an uploaded template reads) and for the plan (the bytes
//! sent, their hash).

use std::path::{Path, PathBuf};

/// Files under `root` (or `root` itself), as (relative path, path), sorted.
pub fn collect_files(
    root: &Path,
    path: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        let rel = path
            .strip_prefix(root)
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push((rel, path.to_path_buf()));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        collect_files(root, &entry.path(), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::collect_files;

    #[test]
    fn a_folder_is_listed_sorted_with_relative_paths_and_a_file_as_itself() {
        let dir = std::env::temp_dir().join(format!("rb-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("b.txt"), "b").unwrap();
        std::fs::write(dir.join("a.txt"), "a").unwrap();
        std::fs::write(dir.join("sub/c.txt"), "c").unwrap();
        let mut out = Vec::new();
        collect_files(&dir, &dir, &mut out).unwrap();
        let rel: Vec<&str> = out.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(rel, ["a.txt", "b.txt", "sub/c.txt"]);
        let mut one = Vec::new();
        let file = dir.join("a.txt");
        collect_files(&file, &file, &mut one).unwrap();
        assert_eq!(one, [(String::new(), file)]);
        assert!(collect_files(&dir, &dir.join("missing"), &mut Vec::new()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
