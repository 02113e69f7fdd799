//! The host: cgroup v2 and BPF filesystem mounts, cgroup ids, privileges.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors about the host's mounts and privileges.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no cgroup v2 filesystem is mounted (looked in /proc/self/mountinfo); the agent attaches to a cgroup v2 directory")]
    NoCgroup2,
    #[error("{0} is not a directory of a cgroup v2 filesystem (the cgroup v2 mounts here: {1})")]
    NotCgroup2(PathBuf, String),
    #[error("{0} is not on a BPF filesystem (bpffs); mount one (`mount -t bpf bpf /sys/fs/bpf`) or choose another --pin-dir")]
    NotBpffs(PathBuf),
    #[error("mounting the BPF filesystem on /sys/fs/bpf failed: {0}")]
    Mount(String),
}

/// One line of `/proc/self/mountinfo`: mount point and filesystem type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
}

/// Parses `/proc/self/mountinfo` text (fields: id, parent, dev, root, mount point, options, optional
/// fields, `-`, fstype, source, super options; octal escapes in paths).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if let (Some(point), Some(fstype)) = (fields.get(4), fields.get(dash + 1)) {
            out.push(Mount {
                point: PathBuf::from(unescape(point)),
                fstype: (*fstype).to_string(),
            });
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if digits.len() == 3 {
                if let Ok(v) = u8::from_str_radix(&digits, 8) {
                    out.push(char::from(v));
                    for _ in 0..3 {
                        chars.next();
                    }
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// The mounts of this process.
pub fn mounts() -> Result<Vec<Mount>, SystemError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(path).map_err(|source| SystemError::Read {
        path: path.into(),
        source,
    })?;
    Ok(parse_mountinfo(&text))
}

/// The filesystem type `path` lives on: the type of the longest mount point that contains it.
pub fn fstype_of(mounts: &[Mount], path: &Path) -> Option<String> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.point))
        .max_by_key(|m| m.point.components().count())
        .map(|m| m.fstype.clone())
}

/// The cgroup v2 mount points.
pub fn cgroup2_mounts(mounts: &[Mount]) -> Vec<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .map(|m| m.point.clone())
        .collect()
}

/// The cgroup to attach to: `requested` when given (must be on cgroup v2); otherwise
/// `/sys/fs/cgroup` when it is cgroup v2 (unified hierarchy), else the first cgroup v2 mount
/// (hybrid hierarchies mount it at `/sys/fs/cgroup/unified`).
pub fn resolve_cgroup(requested: Option<&Path>) -> Result<PathBuf, SystemError> {
    let mounts = mounts()?;
    let v2 = cgroup2_mounts(&mounts);
    let list = || {
        v2.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match requested {
        Some(path) => {
            let path = fs::canonicalize(path).map_err(|source| SystemError::Read {
                path: path.into(),
                source,
            })?;
            if fstype_of(&mounts, &path).as_deref() == Some("cgroup2") && path.is_dir() {
                Ok(path)
            } else {
                Err(SystemError::NotCgroup2(path, list()))
            }
        }
        None => {
            let default = Path::new("/sys/fs/cgroup");
            if fstype_of(&mounts, default).as_deref() == Some("cgroup2") {
                return Ok(default.to_path_buf());
            }
            v2.first().cloned().ok_or(SystemError::NoCgroup2)
        }
    }
}

/// A cgroup v2 directory's id (its inode number, which is the kernel's cgroup id).
pub fn cgroup_id(path: &Path) -> Result<u64, SystemError> {
    fs::metadata(path).map(|m| m.ino()).map_err(|source| SystemError::Read {
        path: path.into(),
        source,
    })
}

/// Makes sure `pin_dir` can live on a BPF filesystem: when nothing is mounted on `/sys/fs/bpf`
/// and `pin_dir` is under it, mounts one there (what a node without systemd's mount lacks);
/// otherwise a `pin_dir` outside any bpffs is an error.
pub fn ensure_bpffs(pin_dir: &Path) -> Result<(), SystemError> {
    let bpf_root = Path::new("/sys/fs/bpf");
    let on_bpffs = |mounts: &[Mount]| fstype_of(mounts, pin_dir).as_deref() == Some("bpf");
    if on_bpffs(&mounts()?) {
        return Ok(());
    }
    if !pin_dir.starts_with(bpf_root) {
        return Err(SystemError::NotBpffs(pin_dir.into()));
    }
    tracing::info!(path = %bpf_root.display(), "mounting the BPF filesystem");
    let out = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(bpf_root)
        .output()
        .map_err(|e| SystemError::Mount(e.to_string()))?;
    if !out.status.success() {
        return Err(SystemError::Mount(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    if on_bpffs(&mounts()?) {
        Ok(())
    } else {
        Err(SystemError::NotBpffs(pin_dir.into()))
    }
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SAMPLE: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
31 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
50 25 0:40 / /sys/fs/bpf rw,relatime - bpf bpf rw
60 1 0:41 / /mnt/with\\040space rw - ext4 /dev/x rw
";

    #[test]
    fn mountinfo_gives_types_by_longest_prefix() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[4].point, PathBuf::from("/mnt/with space"));
        assert_eq!(
            fstype_of(&m, Path::new("/sys/fs/cgroup/unified/x")).as_deref(),
            Some("cgroup2")
        );
        assert_eq!(fstype_of(&m, Path::new("/sys/fs/cgroup/cpu")).as_deref(), Some("tmpfs"));
        assert_eq!(fstype_of(&m, Path::new("/sys/fs/bpf/flotilla")).as_deref(), Some("bpf"));
        assert_eq!(fstype_of(&m, Path::new("/sys/fs/bpfx")).as_deref(), Some("sysfs"));
        assert_eq!(cgroup2_mounts(&m), vec![PathBuf::from("/sys/fs/cgroup/unified")]);
    }
}
