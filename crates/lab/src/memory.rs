//! The memory this machine has for a run, read once from `/proc` and the cgroup: a run whose
//! flags ask for more than that is refused before it starts ([`Error::Memory`], exit 2), not
//! discovered by the allocator (an abort) or the kernel (the OOM killer).
//!
//! What there is: the least of the kernel's `MemAvailable`, what the process's cgroup (and each
//! cgroup above it) allows beyond what it uses (v2 `memory.max`, v1 `memory.limit_in_bytes`;
//! what it uses not counting the page cache it could drop), and what the address-space limit
//! (`ulimit -v`) leaves. None of them known (not Linux): no guard.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// What limits the memory a run can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The machine's available memory (`MemAvailable`).
    Machine,
    /// The cgroup's limit, less what its processes use.
    Cgroup,
    /// The process's address-space limit (`ulimit -v`), less what it maps.
    AddressSpace,
}

/// The memory a run can have, and what sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Available {
    /// Bytes.
    pub bytes: u64,
    /// What sets it.
    pub limit: Limit,
}

impl fmt::Display for Available {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = bytes_in_words(self.bytes);
        match self.limit {
            Limit::Machine => write!(f, "this machine has {b} available"),
            Limit::Cgroup => write!(f, "this process's cgroup allows {b} more"),
            Limit::AddressSpace => write!(f, "its address-space limit (ulimit -v) leaves {b}"),
        }
    }
}

/// The memory a run can have now; `None` where none of the figures can be read.
pub fn available() -> Option<Available> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let machine = read("/proc/meminfo")
        .and_then(|t| meminfo_available(&t))
        .map(|bytes| Available {
            bytes,
            limit: Limit::Machine,
        });
    let cgroup = read("/proc/self/cgroup")
        .and_then(|t| cgroup_left(&t, Path::new("/sys/fs/cgroup")))
        .map(|bytes| Available {
            bytes,
            limit: Limit::Cgroup,
        });
    let address_space = read("/proc/self/limits")
        .and_then(|t| address_space_limit(&t))
        .map(|limit| {
            let mapped = read("/proc/self/status")
                .and_then(|t| status_kib(&t, "VmSize:"))
                .unwrap_or(0);
            Available {
                bytes: limit.saturating_sub(mapped),
                limit: Limit::AddressSpace,
            }
        });
    [machine, cgroup, address_space]
        .into_iter()
        .flatten()
        .min_by_key(|a| a.bytes)
}

/// Refuses a run whose `count` items (what `flag` asks for) of `per_item` bytes each, plus
/// `base` bytes, need more memory than the run can have ([`available`]).
pub fn check(
    flag: &'static str,
    count: u64,
    per_item: u64,
    each: &'static str,
    base: u64,
) -> Result<()> {
    let needs = count.saturating_mul(per_item).saturating_add(base);
    match available() {
        Some(available) if needs > available.bytes => Err(Error::Memory {
            flag,
            count,
            needs,
            per_item,
            each,
            available,
        }),
        _ => Ok(()),
    }
}

/// A size as people read it: `150 bytes`, `64.0 KiB`, `14.9 GiB`.
pub fn bytes_in_words(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn meminfo_available(meminfo: &str) -> Option<u64> {
    status_kib(meminfo, "MemAvailable:")
}

/// The value of a `NAME: N kB` line (of `/proc/meminfo` or `/proc/self/status`), in bytes.
fn status_kib(text: &str, name: &str) -> Option<u64> {
    let v = text.lines().find_map(|l| l.strip_prefix(name))?;
    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The soft address-space limit of `/proc/self/limits`, in bytes (`None`: unlimited).
fn address_space_limit(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max address space"))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A cgroup limit at or above this is none (v1 writes "no limit" as 2^63 rounded to a page).
const NO_LIMIT: u64 = 1 << 60;

/// What the process's cgroups (from `/proc/self/cgroup`, under `root`) allow beyond what they
/// use: the least over the process's cgroup and each above it, v2 or v1. `None`: no limit.
fn cgroup_left(self_cgroup: &str, root: &Path) -> Option<u64> {
    let mut left: Option<u64> = None;
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (mount, files) = match controllers {
            "" => (root.to_path_buf(), V2),
            c if c.split(',').any(|c| c == "memory") => (root.join("memory"), V1),
            _ => continue,
        };
        for dir in up_from(&mount, path) {
            if let Some(l) = cgroup_dir_left(&dir, files) {
                left = Some(left.map_or(l, |x| x.min(l)));
            }
        }
    }
    left
}

/// The files of one cgroup version: its limit, its use, and the page cache line of its
/// `memory.stat` (used but droppable).
type Files = (&'static str, &'static str, &'static str);
const V2: Files = ("memory.max", "memory.current", "inactive_file ");
const V1: Files = (
    "memory.limit_in_bytes",
    "memory.usage_in_bytes",
    "total_inactive_file ",
);

/// `mount` joined with the cgroup `path`, then each directory above it up to `mount` (a
/// container sees its own cgroup as the mount's root, where the full path is absent).
fn up_from(mount: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut p = Path::new(path.trim_start_matches('/'));
    loop {
        dirs.push(mount.join(p));
        match p.parent() {
            Some(up) => p = up,
            None => break,
        }
    }
    dirs
}

/// What one cgroup directory allows beyond what it uses; `None`: no limit there (or none
/// readable).
fn cgroup_dir_left(dir: &Path, (max, current, inactive): Files) -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let limit: u64 = read(max)?.trim().parse().ok()?; // "max": no limit
    if limit >= NO_LIMIT {
        return None;
    }
    let used: u64 = read(current)
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let cache: u64 = read("memory.stat")
        .and_then(|t| {
            let v = t.lines().find_map(|l| l.strip_prefix(inactive))?;
            v.trim().parse().ok()
        })
        .unwrap_or(0);
    Some(limit.saturating_sub(used.saturating_sub(cache)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_status_lines() {
        let meminfo = "MemTotal:       24576000 kB\nMemFree:         1048576 kB\n\
                       MemAvailable:   22334455 kB\nBuffers:           12345 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(22_334_455 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
        assert_eq!(
            status_kib("Name:\tplsim\nVmSize:\t    3896 kB\n", "VmSize:"),
            Some(3896 * 1024)
        );
    }

    #[test]
    fn the_address_space_limit() {
        let header =
            "Limit                     Soft Limit           Hard Limit           Units     \n";
        let unlimited = format!(
            "{header}Max stack size            8388608              unlimited            bytes     \n\
             Max address space         unlimited            unlimited            bytes     \n"
        );
        assert_eq!(address_space_limit(&unlimited), None);
        let limited = format!(
            "{header}Max address space         4096000000           unlimited            bytes     \n"
        );
        assert_eq!(address_space_limit(&limited), Some(4_096_000_000));
    }

    #[test]
    fn cgroup_limits_v2_and_v1_the_least_up_the_tree() {
        let root = std::env::temp_dir().join(format!("plsim-memory-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |dir: &Path, f: &str, v: &str| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(f), v).unwrap();
        };
        // v2: the process's cgroup allows 8 GiB and uses 3 GiB, 1 GiB of it droppable cache;
        // its parent allows 5 GiB and uses 4; the root has no limit.
        let job = root.join("jobs/job-1");
        write(&job, "memory.max", "8589934592\n");
        write(&job, "memory.current", "3221225472\n");
        write(
            &job,
            "memory.stat",
            "anon 2147483648\ninactive_file 1073741824\n",
        );
        write(&root.join("jobs"), "memory.max", "5368709120\n");
        write(&root.join("jobs"), "memory.current", "4294967296\n");
        write(&root, "memory.max", "max\n");
        let v2 = "0::/jobs/job-1\n";
        assert_eq!(cgroup_left(v2, &root), Some(1 << 30), "the parent's 1 GiB");
        std::fs::write(root.join("jobs/memory.max"), "max\n").unwrap();
        assert_eq!(
            cgroup_left(v2, &root),
            Some(6 << 30),
            "8 GiB less 2 of anon"
        );
        assert_eq!(cgroup_left("0::/\n", &root), None, "the root has no limit");
        // v1, in a container that sees its own cgroup as the mount's root: the full path is
        // absent, the root's files are the container's.
        let mem = root.join("memory");
        write(&mem, "memory.limit_in_bytes", "4294967296\n");
        write(&mem, "memory.usage_in_bytes", "1073741824\n");
        write(
            &mem,
            "memory.stat",
            "cache 0\ntotal_inactive_file 536870912\n",
        );
        let v1 = "4:memory:/process_api/4a3c\n3:cpuset:/\n0::/\n";
        assert_eq!(cgroup_left(v1, &root), Some((4 << 30) - (512 << 20)));
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_left(v1, &root), None, "v1's no limit");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn sizes_in_words_and_the_refusal() {
        assert_eq!(bytes_in_words(150), "150 bytes");
        assert_eq!(bytes_in_words(64 << 10), "64.0 KiB");
        assert_eq!(bytes_in_words(16_000_000_000), "14.9 GiB");
        let e = Error::Memory {
            flag: "--flows",
            count: 100_000_000,
            needs: 16_000_000_000,
            per_item: 160,
            each: "a flow",
            available: Available {
                bytes: 22_870_000_000,
                limit: Limit::Machine,
            },
        };
        assert_eq!(
            e.to_string(),
            "--flows 100000000 needs about 14.9 GiB (160 bytes a flow); this machine has 21.3 GiB \
             available"
        );
        assert_eq!(e.exit_code(), 2);
        // Nothing needs more than there is: no refusal.
        assert!(check("--flows", 1, 1, "a flow", 0).is_ok());
        let e = check("--flows", u64::MAX, 160, "a flow", 0).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--flows 18446744073709551615 needs about"),
            "{e}"
        );
    }
}
