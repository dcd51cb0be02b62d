//! `group_vars/` and `host_vars/` beside an inventory file, read as
//! ansible-core's `host_group_vars` plugin reads them: `NAME`, `NAME.yml`,
//! `NAME.yaml` or `NAME.json`, or a folder `NAME/` of such files (in name
//! order, hidden files skipped), each a YAML (or JSON) mapping.

use indexmap::IndexMap;
use std::path::Path;

use super::HostVars;

/// The variables from the files, by group and by host.
#[derive(Debug, Default)]
pub(super) struct VarsFiles {
    pub groups: IndexMap<String, HostVars>,
    pub hosts: IndexMap<String, HostVars>,
}

const EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

impl VarsFiles {
    /// Reads `dir/group_vars` and `dir/host_vars` (absent folders are none).
    pub fn read(dir: &Path) -> Result<Self, String> {
        Ok(VarsFiles {
            groups: read_folder(&dir.join("group_vars"))?,
            hosts: read_folder(&dir.join("host_vars"))?,
        })
    }
}

/// Entity name → its merged variables.
fn read_folder(folder: &Path) -> Result<IndexMap<String, HostVars>, String> {
    let mut out: IndexMap<String, HostVars> = IndexMap::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok(out);
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        if file.starts_with('.') || file.ends_with('~') {
            continue;
        }
        let (name, ext) = match file.rsplit_once('.') {
            Some((n, e)) if EXTENSIONS.contains(&e) => (n, Some(e)),
            _ => (file, None),
        };
        let mut vars = HostVars::default();
        if path.is_dir() {
            read_into(&path, &mut vars, 0)?;
        } else if ext.is_some() || !file.contains('.') {
            vars = read_one(&path)?;
        } else {
            continue;
        }
        let entry = out.entry(name.to_string()).or_default();
        *entry = entry.overlay(&vars);
    }
    Ok(out)
}

/// Every file under a `NAME/` folder, in name order, deeper folders too.
fn read_into(dir: &Path, vars: &mut HostVars, depth: usize) -> Result<(), String> {
    if depth > 16 {
        return Ok(());
    }
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or(".");
        if file.starts_with('.') || file.ends_with('~') {
            continue;
        }
        if path.is_dir() {
            read_into(&path, vars, depth + 1)?;
            continue;
        }
        let ext = file.rsplit_once('.').map(|(_, e)| e);
        if ext.is_none_or(|e| EXTENSIONS.contains(&e)) {
            *vars = vars.overlay(&read_one(&path)?);
        }
    }
    Ok(())
}

/// One vars file: a mapping (an empty file sets nothing).
fn read_one(path: &Path) -> Result<HostVars, String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let doc: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| at(e.to_string()))?;
    match doc {
        serde_norway::Value::Null => Ok(HostVars::default()),
        serde_norway::Value::Mapping(_) => super::yaml::vars_of(&doc).map_err(at),
        _ => Err(at("is not a mapping of variables".to_string())),
    }
}
