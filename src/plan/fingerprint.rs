//! A step's fingerprint (SPEC §3, §11): the hash of what it does, so a
//! changed definition reruns it and resuming from another machine does not.

use sha2::{Digest, Sha256};

use super::Rendered;

/// What a step does, hashed, the same on every machine (SPEC §11): an
/// upload's source relative to the runbook's folder, the host by name,
/// address and port. How this machine reaches the host (identity file,
/// known_hosts, the login user) is not in it.
pub(super) fn fingerprint(rendered: &Rendered, dir: &std::path::Path) -> String {
    let mut json = serde_json::to_value(rendered).unwrap_or_default();
    if let Some(upload) = json
        .get_mut("action")
        .and_then(|a| a.get_mut("Upload"))
        .and_then(|u| u.as_object_mut())
    {
        if let crate::action::RenderedAction::Upload { src, .. } = &rendered.action {
            let relative = src.strip_prefix(dir).unwrap_or(src);
            upload.insert(
                "src".into(),
                serde_json::Value::String(relative.display().to_string()),
            );
        }
    }
    if let Some(map) = json.as_object_mut() {
        map.insert("host".into(), serde_json::json!(rendered.place));
    }
    let bytes = serde_json::to_vec(&json).unwrap_or_default();
    format!("{:x}", Sha256::digest(&bytes))[..16].to_string()
}

/// The fingerprint of runbook 0.1 up to SPEC §11's: the rendered step as
/// it is, with the upload's absolute source and `user@address:port`.
pub(super) fn legacy_fingerprint(rendered: &Rendered) -> String {
    let json = serde_json::to_vec(rendered).unwrap_or_default();
    format!("{:x}", Sha256::digest(&json))[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::RenderedAction;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn upload(dir: &str, user: &str) -> Rendered {
        Rendered {
            when: true,
            unless: None,
            env: Vec::new(),
            timeout: None,
            retries: 0,
            retry_delay: Duration::ZERO,
            action: RenderedAction::Upload {
                src: PathBuf::from(dir).join("files/app.conf"),
                dest: "/etc/app.conf".into(),
                template: false,
                mode: None,
                delete: false,
                exclude: Vec::new(),
                files: Vec::new(),
                source_hash: None,
            },
            host: Some(format!("{user}@10.0.0.1:22")),
            place: Some("web 10.0.0.1:22".into()),
        }
    }

    #[test]
    fn two_checkouts_and_two_login_users_give_one_fingerprint() {
        let a = fingerprint(
            &upload("/home/op/ops/runbooks", "op"),
            Path::new("/home/op/ops/runbooks"),
        );
        let b = fingerprint(
            &upload("/srv/lukas/checkout/runbooks", "lukas"),
            Path::new("/srv/lukas/checkout/runbooks"),
        );
        assert_eq!(a, b);
        // The old hash saw both: it differs, and is kept to be recognised.
        assert_ne!(
            legacy_fingerprint(&upload("/home/op/ops/runbooks", "op")),
            legacy_fingerprint(&upload("/srv/lukas/checkout/runbooks", "lukas"))
        );
    }

    #[test]
    fn what_the_step_does_is_still_in_it() {
        let dir = Path::new("/r");
        let base = fingerprint(&upload("/r", "op"), dir);
        let mut moved = upload("/r", "op");
        moved.place = Some("web 10.0.0.2:22".into());
        assert_ne!(fingerprint(&moved, dir), base);
        let mut other_src = upload("/r", "op");
        if let RenderedAction::Upload { src, .. } = &mut other_src.action {
            *src = PathBuf::from("/r/files/other.conf");
        }
        assert_ne!(fingerprint(&other_src, dir), base);
        let mut other_dest = upload("/r", "op");
        if let RenderedAction::Upload { dest, .. } = &mut other_dest.action {
            *dest = "/etc/other.conf".into();
        }
        assert_ne!(fingerprint(&other_dest, dir), base);
    }
}
