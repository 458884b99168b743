//! Pod IP allocation recorded on disk, the way CNI's host-local plugin does it: one file per
//! allocated address (`<state dir>/ips/<ip>`, holding the sandbox id and its host veth), written
//! atomically under an exclusive lock before the address is put on an interface. The directory
//! is the only truth, so an address is never handed out twice — across threads, processes and
//! crashes — and a restarted agent finds every allocation again.
//!
//! Reading every record on every attach made a burst of pod starts quadratic in the pods on
//! the node, so a process keeps the records it last read or wrote in memory, tagged with the
//! directory's *generation*: a counter in `<state dir>/generation` that every change bumps
//! under the lock before it touches a record. Under the lock, an unchanged generation means
//! nobody else changed anything since, and the memory copy is the directory's content.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nix::fcntl::{Flock, FlockArg};

use super::NetworkError;
use super::cidr::Ipv4Cidr;

const IPS_DIR: &str = "ips";
const LOCK_FILE: &str = "lock";
/// Where the last allocation is remembered, so the next search starts after it and a released
/// address is not reused at once (a stale ARP or conntrack entry elsewhere could still point at it).
const LAST_RESERVED: &str = "last_reserved_ip";
/// Bumped by every change of the records (see the module docs).
const GENERATION: &str = "generation";

pub(super) struct Ipam {
    state_dir: PathBuf,
    range: Ipv4Cidr,
    /// This process's copy of the records and the generation it is of.
    known: Mutex<Option<Known>>,
}

struct Known {
    generation: u64,
    records: BTreeMap<Ipv4Addr, Record>,
}

/// One allocation: the sandbox holding the address and the host end of its veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub ip: Ipv4Addr,
    pub sandbox_id: String,
    pub host_veth: String,
}

/// Holds the IPAM lock; allocation state may only be read or changed through it.
pub(super) struct Locked<'a> {
    ipam: &'a Ipam,
    _lock: Flock<File>,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Ipam {
    pub(super) fn new(state_dir: &Path, range: Ipv4Cidr) -> Ipam {
        Ipam {
            state_dir: state_dir.to_path_buf(),
            range,
            known: Mutex::new(None),
        }
    }

    fn ips_dir(&self) -> PathBuf {
        self.state_dir.join(IPS_DIR)
    }

    /// Takes the lock (blocking). Every thread and process opens the lock file anew, and
    /// `flock` locks conflict between open file descriptions, so this excludes both.
    pub(super) fn lock(&self) -> Result<Locked<'_>, NetworkError> {
        let ips = self.ips_dir();
        fs::create_dir_all(&ips).map_err(io_error(&ips))?;
        let path = self.state_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| NetworkError::Io {
                path: path.clone(),
                source: io::Error::from(errno),
            })?;
        Ok(Locked {
            ipam: self,
            _lock: lock,
        })
    }

    /// Removes everything the allocator keeps, then the state directory if nothing else is in it.
    pub(super) fn remove_state(state_dir: &Path) -> Result<(), NetworkError> {
        let ips = state_dir.join(IPS_DIR);
        match fs::remove_dir_all(&ips) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&ips)(e)),
        }
        for name in [LOCK_FILE, LAST_RESERVED, GENERATION] {
            let path = state_dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        // Only when empty: the directory may be shared with other state.
        let _ = fs::remove_dir(state_dir);
        Ok(())
    }
}

impl Locked<'_> {
    /// Every allocation, in address order.
    pub(super) fn records(&self) -> Result<Vec<Record>, NetworkError> {
        self.with_records(|records| records.values().cloned().collect())
            .map(|(records, _)| records)
    }

    pub(super) fn find(&self, sandbox_id: &str) -> Result<Option<Record>, NetworkError> {
        self.with_records(|records| {
            records
                .values()
                .find(|record| record.sandbox_id == sandbox_id)
                .cloned()
        })
        .map(|(record, _)| record)
    }

    /// Runs `f` on the records — this process's copy when the generation on disk is the one it
    /// was taken at, else what the directory holds now — and returns its result with the
    /// generation the records are of.
    fn with_records<T>(
        &self,
        f: impl FnOnce(&BTreeMap<Ipv4Addr, Record>) -> T,
    ) -> Result<(T, u64), NetworkError> {
        let generation = self.generation();
        let mut known = self.known();
        if let Some(known) = known.as_ref().filter(|k| k.generation == generation) {
            return Ok((f(&known.records), generation));
        }
        *known = None;
        let (generation, records) = self.read_records(generation)?;
        let known = known.insert(Known {
            generation,
            records,
        });
        Ok((f(&known.records), generation))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Option<Known>> {
        self.ipam
            .known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self) -> u64 {
        fs::read_to_string(self.ipam.state_dir.join(GENERATION))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Announces a change of the records: called before making it, so that a process that dies
    /// halfway still leaves the others rereading. Returns the new generation.
    fn bump(&self, from: u64) -> Result<u64, NetworkError> {
        let path = self.ipam.state_dir.join(GENERATION);
        let next = from + 1;
        fs::write(&path, next.to_string()).map_err(io_error(&path))?;
        Ok(next)
    }

    /// Applies this process's own change to its copy, if it has one of the generation the
    /// change was made from.
    fn remember(&self, from: u64, to: u64, change: impl FnOnce(&mut BTreeMap<Ipv4Addr, Record>)) {
        let mut known = self.known();
        match known.as_mut() {
            Some(k) if k.generation == from => {
                change(&mut k.records);
                k.generation = to;
            }
            _ => *known = None,
        }
    }

    /// The records on disk; `generation` is what the counter said before reading. Returns the
    /// generation they are of.
    fn read_records(
        &self,
        mut generation: u64,
    ) -> Result<(u64, BTreeMap<Ipv4Addr, Record>), NetworkError> {
        let dir = self.ipam.ips_dir();
        let mut records = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io_error(&dir))? {
            let entry = entry.map_err(io_error(&dir))?;
            // Temp files of interrupted writes and anything else are not allocations.
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let text = fs::read_to_string(&path).map_err(io_error(&path))?;
            let mut lines = text.lines();
            let sandbox_id = lines.next().unwrap_or_default().trim().to_string();
            let host_veth = lines.next().unwrap_or_default().trim().to_string();
            if sandbox_id.is_empty() {
                // Only a power loss right after an allocation leaves a record without its
                // content, and then its pod's namespaces are gone as well: the address is free.
                tracing::warn!(path = %path.display(), "removing an empty address record");
                generation = self.bump(generation)?;
                fs::remove_file(&path).map_err(io_error(&path))?;
                continue;
            }
            records.insert(
                ip,
                Record {
                    ip,
                    sandbox_id,
                    host_veth,
                },
            );
        }
        Ok((generation, records))
    }

    /// Records a free address for the sandbox and returns it. Addresses 0 (network) and 1
    /// (gateway) and the broadcast address are never given out.
    pub(super) fn allocate(
        &self,
        sandbox_id: &str,
        host_veth: &str,
    ) -> Result<Record, NetworkError> {
        let range = self.ipam.range;
        let (taken, generation): (std::collections::HashSet<Ipv4Addr>, u64) =
            self.with_records(|records| records.keys().copied().collect())?;
        let first = 2u64;
        let last = range.size().saturating_sub(2);
        let usable = last.saturating_sub(first) + 1;
        let start = self
            .last_reserved()
            .and_then(|ip| range.offset_of(ip))
            .filter(|offset| (first..=last).contains(offset))
            .map_or(
                first,
                |offset| if offset == last { first } else { offset + 1 },
            );
        let candidate = (0..usable)
            .map(|step| first + (start - first + step) % usable)
            .filter_map(|offset| range.nth(offset))
            .find(|ip| !taken.contains(ip));
        let Some(ip) = candidate else {
            return Err(NetworkError::Exhausted {
                pod_cidr: range,
                allocated: taken.len(),
            });
        };
        let record = Record {
            ip,
            sandbox_id: sandbox_id.to_string(),
            host_veth: host_veth.to_string(),
        };
        let dir = self.ipam.ips_dir();
        let next = self.bump(generation)?;
        write_atomically(
            &dir,
            &ip.to_string(),
            format!("{sandbox_id}\n{host_veth}\n").as_bytes(),
        )?;
        self.remember(generation, next, |records| {
            records.insert(ip, record.clone());
        });
        // Rewritten in place, as host-local does: it is only where the next search starts (a
        // torn one reads as absent), and a rename would allocate and free an inode per pod.
        let last = self.ipam.state_dir.join(LAST_RESERVED);
        fs::write(&last, ip.to_string()).map_err(io_error(&last))?;
        Ok(record)
    }

    /// Forgets the sandbox's allocations (there is at most one, unless a crash interleaved).
    pub(super) fn release(&self, sandbox_id: &str) -> Result<Vec<Ipv4Addr>, NetworkError> {
        let (held, generation): (Vec<Ipv4Addr>, u64) = self.with_records(|records| {
            records
                .values()
                .filter(|record| record.sandbox_id == sandbox_id)
                .map(|record| record.ip)
                .collect()
        })?;
        if held.is_empty() {
            return Ok(held);
        }
        let next = self.bump(generation)?;
        let mut released = Vec::new();
        for &ip in &held {
            let path = self.ipam.ips_dir().join(ip.to_string());
            match fs::remove_file(&path) {
                Ok(()) => released.push(ip),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        // Gone from the directory, whether removed now or already.
        self.remember(generation, next, |records| {
            for ip in &held {
                records.remove(ip);
            }
        });
        Ok(released)
    }

    fn last_reserved(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.ipam.state_dir.join(LAST_RESERVED))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Writes `dir/name` so that it holds either its old content or all of `content` (temp file,
/// rename), without an fsync: records must outlive the agent, which the page cache does, and
/// a power loss takes the pods' namespaces with it (a record left empty by one is removed as
/// free when read). CNI's host-local allocator does not sync either; under the lock an fsync
/// per pod serialised a burst of pod starts on the disk.
fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> Result<(), NetworkError> {
    let temp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let mut file = File::create(&temp).map_err(io_error(&temp))?;
    file.write_all(content).map_err(io_error(&temp))?;
    drop(file);
    fs::rename(&temp, &target).map_err(io_error(&target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_round_robin_and_skips_reserved_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.9.0.0/29"));
        let locked = ipam.lock().unwrap();
        let ips: Vec<String> = (0..5)
            .map(|i| {
                locked
                    .allocate(&format!("s{i}"), "v")
                    .unwrap()
                    .ip
                    .to_string()
            })
            .collect();
        // .0 network, .1 gateway, .7 broadcast are never given out.
        assert_eq!(
            ips,
            ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"]
        );
        let err = locked.allocate("s5", "v").unwrap_err();
        assert!(
            matches!(err, NetworkError::Exhausted { allocated: 5, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "no free address left in the pod CIDR 10.9.0.0/29 (5 in use)"
        );
        // A released address is reused only after the others: the search goes on from the last.
        assert_eq!(
            locked.release("s1").unwrap(),
            vec!["10.9.0.3".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(
            locked.allocate("s6", "v").unwrap().ip.to_string(),
            "10.9.0.3"
        );
        assert!(locked.release("nobody").unwrap().is_empty());
        let found = locked.find("s4").unwrap().unwrap();
        assert_eq!(
            (found.ip.to_string(), found.host_veth.as_str()),
            ("10.9.0.6".into(), "v")
        );
        drop(locked);
        // A new allocator over the same directory (a restarted agent) sees the same records.
        let again = Ipam::new(dir.path(), cidr("10.9.0.0/29"));
        assert_eq!(again.lock().unwrap().records().unwrap().len(), 5);
        Ipam::remove_state(dir.path()).unwrap();
        assert!(!dir.path().exists());
    }

    #[test]
    fn changes_by_another_process_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        // Two allocators over one directory: this agent and, say, `skiff agent --cleanup`.
        let this = Ipam::new(dir.path(), cidr("10.9.0.0/24"));
        let other = Ipam::new(dir.path(), cidr("10.9.0.0/24"));
        let a = this.lock().unwrap().allocate("a", "va").unwrap().ip;
        assert_eq!(other.lock().unwrap().find("a").unwrap().unwrap().ip, a);
        let b = other.lock().unwrap().allocate("b", "vb").unwrap().ip;
        assert_ne!(a, b);
        assert_eq!(this.lock().unwrap().find("b").unwrap().unwrap().ip, b);
        // The next search of `this` must not hand out `b` again.
        let c = this.lock().unwrap().allocate("c", "vc").unwrap().ip;
        assert!(![a, b].contains(&c), "{c} handed out twice");
        assert_eq!(other.lock().unwrap().release("a").unwrap(), vec![a]);
        assert_eq!(this.lock().unwrap().find("a").unwrap(), None);
        let ips: Vec<Ipv4Addr> = this
            .lock()
            .unwrap()
            .records()
            .unwrap()
            .into_iter()
            .map(|r| r.ip)
            .collect();
        assert_eq!(ips, vec![b, c]);
    }

    #[test]
    fn a_process_reads_the_records_again_only_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.9.0.0/24"));
        let ip = ipam.lock().unwrap().allocate("a", "va").unwrap().ip;
        // Rewritten behind the allocator's back without a new generation: its copy stands.
        let record = dir.path().join(IPS_DIR).join(ip.to_string());
        fs::write(&record, "z\nvz\n").unwrap();
        assert_eq!(ipam.lock().unwrap().find("a").unwrap().unwrap().ip, ip);
        // Any change announced by the generation makes it read the directory again.
        Ipam::new(dir.path(), cidr("10.9.0.0/24"))
            .lock()
            .unwrap()
            .allocate("b", "vb")
            .unwrap();
        let locked = ipam.lock().unwrap();
        assert_eq!(locked.find("a").unwrap(), None);
        assert_eq!(locked.find("z").unwrap().unwrap().ip, ip);
    }

    #[test]
    fn the_search_resumes_after_the_last_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path(), cidr("10.9.0.0/24"));
        let locked = ipam.lock().unwrap();
        let a = locked.allocate("a", "v").unwrap().ip;
        locked.release("a").unwrap();
        let b = locked.allocate("b", "v").unwrap().ip;
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("10.9.0.2".into(), "10.9.0.3".into())
        );
    }
}
