//! Helpers shared by the end-to-end tests of the `plsim` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `plsim` binary.
pub fn plsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plsim"))
        .args(args)
        .output()
        .expect("plsim runs")
}

/// plsim with its files limited to `bytes` (RLIMIT_FSIZE: a write past it fails with EFBIG,
/// "File too large", as a full disk fails with ENOSPC).
pub fn plsim_limited(args: &[&str], bytes: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plsim"));
    cmd.args(args);
    // SAFETY: async-signal-safe calls only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// The captures others wrote (`../shared/pcaps-real`), or `None` with a message when this clone
/// has no `../shared` beside it (CI always has it: `.ci/run` checks).
pub fn real_pcaps() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps-real");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} is absent (it sits beside the project in CI)",
            dir.display()
        );
        None
    }
}

/// A fresh scratch directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parses the stdout of a `--json` run.
pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "plsim failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}
