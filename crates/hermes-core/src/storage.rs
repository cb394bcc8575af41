//! Will the session directory still be there after a restart?
//!
//! A session kept on a filesystem that vanishes (tmpfs) or in a container's writable layer
//! with no volume mounted is the quiet cause of "it asks me to scan again": everything works
//! until the machine reboots or the container is re-created. This module classifies a path
//! from the facts the caller reads (`/proc/self/mountinfo`, container markers); it does no I/O.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, the parts we need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// What of its filesystem is mounted (for a container volume, the volume's folder).
    pub root: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub read_only: bool,
}

/// Parses `/proc/self/mountinfo`. Malformed lines are skipped: this is diagnosis, and one odd
/// line must not hide the rest.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let mut post = post.split(' ');
            let fs_type = post.next()?.to_owned();
            let source = unescape(post.next().unwrap_or_default());
            let mount_opts = pre.get(5)?;
            Some(Mount {
                root: unescape(pre.get(3)?),
                mount_point: PathBuf::from(unescape(pre.get(4)?)),
                fs_type,
                source,
                read_only: mount_opts.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The mount that holds `path` (an absolute, normalised path): the longest mount point that is
/// a prefix of it. Later mounts over the same point win, as in the kernel.
pub fn mount_of<'a>(path: &Path, mounts: &'a [Mount]) -> Option<&'a Mount> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(&m.mount_point))
        .max_by_key(|(i, m)| (m.mount_point.components().count(), *i))
        .map(|(_, m)| m)
}

/// Facts that say whether we run inside a container, as read by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    /// `/.dockerenv` exists.
    pub dockerenv: bool,
    /// `/run/.containerenv` exists (podman).
    pub containerenv: bool,
    /// The `container` environment variable (systemd-nspawn, podman, LXC set it).
    pub container_var: Option<String>,
    /// `/proc/1/cgroup`.
    pub pid1_cgroup: String,
}

/// Which container runtime, if any, as far as can be told.
pub fn container_kind(f: &ContainerFacts) -> Option<String> {
    if f.dockerenv {
        return Some("docker".to_owned());
    }
    if f.containerenv {
        return Some("podman".to_owned());
    }
    if let Some(v) = f.container_var.as_deref().filter(|v| !v.is_empty()) {
        return Some(v.to_owned());
    }
    ["docker", "kubepods", "containerd", "libpod", "lxc"]
        .into_iter()
        .find(|k| f.pid1_cgroup.contains(k))
        .map(str::to_owned)
}

/// Whether what is written at a path survives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// An ordinary disk filesystem or a mounted volume.
    Persistent,
    /// Lives in memory: gone at the next reboot.
    Volatile { fs_type: String, mount_point: PathBuf },
    /// The container's own writable layer: survives a restart of this container, not its
    /// re-creation (an image update, `docker compose up` after a pull).
    ContainerLayer { runtime: String },
    /// A volume the container runtime made up because the image declares one and none was
    /// given (`VOLUME` without `-v`): a new `docker run` gets a new, empty one.
    AnonymousVolume { runtime: String },
    /// The mount table could not be read or did not cover the path.
    Unknown,
}

const VOLATILE_FS: &[&str] = &["tmpfs", "ramfs", "devtmpfs"];
const LAYER_FS: &[&str] = &["overlay", "overlayfs", "aufs", "fuse-overlayfs"];

/// Classifies the filesystem under `path`.
pub fn persistence(path: &Path, mounts: &[Mount], container: &ContainerFacts) -> Persistence {
    let Some(m) = mount_of(path, mounts) else { return Persistence::Unknown };
    if VOLATILE_FS.contains(&m.fs_type.as_str()) {
        return Persistence::Volatile { fs_type: m.fs_type.clone(), mount_point: m.mount_point.clone() };
    }
    // The writable layer is the root mount; a volume or bind mount is a mount of its own.
    match container_kind(container) {
        Some(runtime) if m.mount_point == Path::new("/") && LAYER_FS.contains(&m.fs_type.as_str()) => {
            Persistence::ContainerLayer { runtime }
        }
        Some(runtime) if anonymous_volume(&m.root) => Persistence::AnonymousVolume { runtime },
        _ => Persistence::Persistent,
    }
}

/// Docker's and Podman's volumes live in `.../volumes/NAME/_data`; one they named themselves
/// is 64 hex digits, one a person named has that name.
fn anonymous_volume(root: &str) -> bool {
    let mut parts = root.rsplit('/');
    let (Some("_data"), Some(name), Some("volumes")) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str = "\
613 520 0:52 / / rw,relatime master:236 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A
614 613 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
620 613 254:1 /var/lib/docker/volumes/hermes/_data /data rw,relatime - ext4 /dev/vda1 rw
621 613 0:60 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
623 613 254:1 /var/lib/docker/volumes/3f0c5b2e9a1d4c7b8e6f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d/_data /anon rw - ext4 /dev/vda1 rw
622 613 254:1 /srv/my\\040dir /mnt/with\\040space ro,relatime - ext4 /dev/vda1 rw
";

    fn docker() -> ContainerFacts {
        ContainerFacts { dockerenv: true, ..Default::default() }
    }

    #[test]
    fn parses_mountinfo_with_escapes() {
        let mounts = parse_mountinfo(DOCKER);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[5].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(mounts[5].root, "/srv/my dir");
        assert!(mounts[5].read_only);
        assert!(!mounts[2].read_only);
    }

    #[track_caller]
    fn check(path: &str, container: ContainerFacts, expected: Persistence) {
        assert_eq!(persistence(Path::new(path), &parse_mountinfo(DOCKER), &container), expected);
    }

    #[test]
    fn classifies_where_a_session_would_live() {
        check(
            "/root/.hermes/platforms/whatsapp/session",
            docker(),
            Persistence::ContainerLayer { runtime: "docker".into() },
        );
        check("/data/.hermes/platforms/whatsapp/session", docker(), Persistence::Persistent);
        check("/anon/session", docker(), Persistence::AnonymousVolume { runtime: "docker".into() });
        check(
            "/dev/shm/hermes",
            docker(),
            Persistence::Volatile { fs_type: "tmpfs".into(), mount_point: "/dev/shm".into() },
        );
        // The same overlay root outside any container is just a filesystem.
        check("/root/.hermes", ContainerFacts::default(), Persistence::Persistent);
        assert_eq!(persistence(Path::new("/x"), &[], &docker()), Persistence::Unknown);
    }

    #[test]
    fn detects_container_runtimes() {
        assert_eq!(container_kind(&ContainerFacts::default()), None);
        let k8s = ContainerFacts { pid1_cgroup: "0::/kubepods/besteffort/pod1".into(), ..Default::default() };
        assert_eq!(container_kind(&k8s).as_deref(), Some("kubepods"));
        let nspawn = ContainerFacts { container_var: Some("systemd-nspawn".into()), ..Default::default() };
        assert_eq!(container_kind(&nspawn).as_deref(), Some("systemd-nspawn"));
    }
}
