//! fstab-style mount option words (as in OCI `mounts[].options`) turned into mount(2) flags,
//! propagation changes, recursive attributes (mount_setattr(2)) and filesystem data.

use nix::mount::MsFlags;

/// `mount_setattr(2)` attribute bits (linux/mount.h).
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
pub(crate) const MOUNT_ATTR_ATIME_MASK: u64 = 0x0000_0070;
pub(crate) const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub(crate) const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub(crate) const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub(crate) const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;

/// The result of [`parse_mount_options`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMountOptions {
    /// Flags to pass to mount(2) (includes `MS_BIND`, and `MS_REC` for `rbind`).
    pub flags: MsFlags,
    /// Flags an option explicitly cleared (`rw` clears `MS_RDONLY`, `suid` clears `MS_NOSUID`…).
    pub clear_flags: MsFlags,
    /// Propagation changes applied after the mount, in order (`MS_PRIVATE`, `MS_REC|MS_SLAVE`…).
    pub propagation: Vec<MsFlags>,
    /// Everything that is not a known option word, comma-joined: the filesystem's data.
    pub data: String,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive_bind: bool,
    /// Recursive attributes to set with mount_setattr(AT_RECURSIVE) (`rro`, `rnosuid`…), as
    /// `MOUNT_ATTR_*` bits.
    pub rec_attr_set: u64,
    /// Recursive attributes to clear (`rrw`, `rsuid`…).
    pub rec_attr_clr: u64,
    /// Words recognised but not implemented (`tmpcopyup`, `idmap`, `ridmap`): never passed on as
    /// filesystem data.
    pub ignored: Vec<String>,
}

impl Default for ParsedMountOptions {
    fn default() -> Self {
        ParsedMountOptions {
            flags: MsFlags::empty(),
            clear_flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
            recursive_bind: false,
            rec_attr_set: 0,
            rec_attr_clr: 0,
            ignored: Vec::new(),
        }
    }
}

impl ParsedMountOptions {
    /// The per-mount flags a bind mount needs a second, remount call for (a bind ignores them).
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags
            & (MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_MANDLOCK
                | MsFlags::MS_DIRSYNC
                | MsFlags::MS_LAZYTIME)
    }
}

/// (word, clear?, flag) — the words runc accepts.
const FLAG_WORDS: &[(&str, bool, MsFlags)] = &[
    ("defaults", false, MsFlags::empty()),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("suid", true, MsFlags::MS_NOSUID),
    ("nodev", false, MsFlags::MS_NODEV),
    ("dev", true, MsFlags::MS_NODEV),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("mand", false, MsFlags::MS_MANDLOCK),
    ("nomand", true, MsFlags::MS_MANDLOCK),
    ("atime", true, MsFlags::MS_NOATIME),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("lazytime", false, MsFlags::MS_LAZYTIME),
    ("nolazytime", true, MsFlags::MS_LAZYTIME),
    ("iversion", false, MsFlags::MS_I_VERSION),
    ("noiversion", true, MsFlags::MS_I_VERSION),
    ("silent", false, MsFlags::MS_SILENT),
    ("loud", true, MsFlags::MS_SILENT),
    ("bind", false, MsFlags::MS_BIND),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
];

const PROPAGATION_WORDS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

/// (word, clear?, attribute) — runc's recursive (mount_setattr) words. Atime words set the whole
/// atime field, so they clear `MOUNT_ATTR_ATIME_MASK` first.
const REC_ATTR_WORDS: &[(&str, bool, u64)] = &[
    ("rro", false, MOUNT_ATTR_RDONLY),
    ("rrw", true, MOUNT_ATTR_RDONLY),
    ("rnosuid", false, MOUNT_ATTR_NOSUID),
    ("rsuid", true, MOUNT_ATTR_NOSUID),
    ("rnodev", false, MOUNT_ATTR_NODEV),
    ("rdev", true, MOUNT_ATTR_NODEV),
    ("rnoexec", false, MOUNT_ATTR_NOEXEC),
    ("rexec", true, MOUNT_ATTR_NOEXEC),
    ("rnodiratime", false, MOUNT_ATTR_NODIRATIME),
    ("rdiratime", true, MOUNT_ATTR_NODIRATIME),
];

const REC_ATIME_WORDS: &[(&str, u64)] = &[
    ("rrelatime", MOUNT_ATTR_RELATIME),
    ("rnorelatime", MOUNT_ATTR_STRICTATIME),
    ("rnoatime", MOUNT_ATTR_NOATIME),
    ("ratime", MOUNT_ATTR_STRICTATIME),
    ("rstrictatime", MOUNT_ATTR_STRICTATIME),
    ("rnostrictatime", MOUNT_ATTR_RELATIME),
];

const IGNORED_WORDS: &[&str] = &["tmpcopyup", "idmap", "ridmap"];

/// Parses OCI/fstab mount option words the way runc does; later words win over earlier ones
/// (`ro,rw` is read-write). Unknown words are kept, in order, as the filesystem data.
pub fn parse_mount_options(options: &[String]) -> ParsedMountOptions {
    let mut out = ParsedMountOptions::default();
    for word in options {
        let w = word.as_str();
        if let Some(&(_, clear, flag)) = FLAG_WORDS.iter().find(|(n, _, _)| *n == w) {
            if clear {
                out.flags.remove(flag);
                out.clear_flags.insert(flag);
            } else {
                out.flags.insert(flag);
                out.clear_flags.remove(flag);
            }
            if flag.contains(MsFlags::MS_BIND) {
                out.bind = true;
                out.recursive_bind |= flag.contains(MsFlags::MS_REC);
            }
        } else if let Some(&(_, flag)) = PROPAGATION_WORDS.iter().find(|(n, _)| *n == w) {
            out.propagation.push(flag);
        } else if let Some(&(_, clear, attr)) = REC_ATTR_WORDS.iter().find(|(n, _, _)| *n == w) {
            if clear {
                out.rec_attr_set &= !attr;
                out.rec_attr_clr |= attr;
            } else {
                out.rec_attr_set |= attr;
                out.rec_attr_clr &= !attr;
            }
        } else if let Some(&(_, attr)) = REC_ATIME_WORDS.iter().find(|(n, _)| *n == w) {
            out.rec_attr_clr |= MOUNT_ATTR_ATIME_MASK;
            out.rec_attr_set = (out.rec_attr_set & !MOUNT_ATTR_ATIME_MASK) | attr;
        } else if IGNORED_WORDS.contains(&w) {
            out.ignored.push(word.clone());
        } else if !w.is_empty() {
            if !out.data.is_empty() {
                out.data.push(',');
            }
            out.data.push_str(w);
        }
    }
    out
}

/// Translates the plain per-mount flags into `MOUNT_ATTR_*` bits (for mount_setattr).
pub(crate) fn flags_to_attr(flags: MsFlags) -> u64 {
    let mut attr = 0;
    for (f, a) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(f) {
            attr |= a;
        }
    }
    attr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(words: &[&str]) -> ParsedMountOptions {
        let v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        parse_mount_options(&v)
    }

    #[test]
    fn default_dev_tmpfs() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind && !o.recursive_bind);
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn set_and_clear_words() {
        let o = p(&[
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "sync",
            "mand",
            "noatime",
            "nodiratime",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_MANDLOCK
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
        );
        assert!(o.clear_flags.is_empty());
        let o = p(&[
            "ro",
            "rw",
            "nosuid",
            "suid",
            "nodev",
            "dev",
            "noexec",
            "exec",
            "sync",
            "async",
            "mand",
            "nomand",
            "noatime",
            "atime",
            "nodiratime",
            "diratime",
        ]);
        assert!(o.flags.is_empty(), "{:?}", o.flags);
        assert!(
            o.clear_flags
                .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID)
        );
        assert!(
            o.clear_flags
                .contains(MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME)
        );
        // Later words win.
        let o = p(&["rw", "ro"]);
        assert_eq!(o.flags, MsFlags::MS_RDONLY);
        assert!(o.clear_flags.is_empty());
    }

    #[test]
    fn atime_words() {
        assert_eq!(p(&["relatime"]).flags, MsFlags::MS_RELATIME);
        assert_eq!(p(&["relatime", "norelatime"]).flags, MsFlags::empty());
        assert_eq!(p(&["strictatime"]).flags, MsFlags::MS_STRICTATIME);
        assert_eq!(p(&["strictatime", "nostrictatime"]).flags, MsFlags::empty());
        assert_eq!(p(&["remount"]).flags, MsFlags::MS_REMOUNT);
    }

    #[test]
    fn bind_words() {
        let o = p(&["bind", "ro"]);
        assert!(o.bind && !o.recursive_bind);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_RDONLY);
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_RDONLY);
        let o = p(&["rbind", "rprivate", "nosuid"]);
        assert!(o.bind && o.recursive_bind);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_NOSUID);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o.data.is_empty());
    }

    #[test]
    fn propagation_words_in_order() {
        let o = p(&[
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ]);
        let r = MsFlags::MS_REC;
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_PRIVATE,
                MsFlags::MS_PRIVATE | r,
                MsFlags::MS_SHARED,
                MsFlags::MS_SHARED | r,
                MsFlags::MS_SLAVE,
                MsFlags::MS_SLAVE | r,
                MsFlags::MS_UNBINDABLE,
                MsFlags::MS_UNBINDABLE | r,
            ]
        );
        assert!(o.flags.is_empty());
    }

    #[test]
    fn data_keeps_unknown_words_in_order() {
        let o = p(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(o.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(p(&[]), ParsedMountOptions::default());
    }

    #[test]
    fn recursive_attrs_and_ignored_words() {
        let o = p(&[
            "rbind",
            "rro",
            "rnosuid",
            "rnoatime",
            "tmpcopyup",
            "size=1k",
        ]);
        assert_eq!(
            o.rec_attr_set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.rec_attr_clr, MOUNT_ATTR_ATIME_MASK);
        assert_eq!(o.ignored, vec!["tmpcopyup".to_string()]);
        assert_eq!(o.data, "size=1k");
        let o = p(&["rro", "rrw"]);
        assert_eq!(o.rec_attr_set, 0);
        assert_eq!(o.rec_attr_clr, MOUNT_ATTR_RDONLY);
    }

    #[test]
    fn attr_translation() {
        assert_eq!(
            flags_to_attr(MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_BIND),
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV
        );
    }
}
