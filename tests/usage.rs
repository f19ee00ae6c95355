//! Wrong usage is refused before anything runs, in the words of clap's own errors, with exit
//! status 2: rules between flags and their values live in the binary, never discovered by the
//! library halfway through a run.

mod common;

use common::{plsim, scratch, stderr};

/// Runs plsim and expects a usage error whose message holds `words`.
fn refused(args: &[&str], words: &str) {
    let o = plsim(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(words), "{args:?}: {err}");
    assert!(
        err.contains("try '--help'"),
        "{args:?} is worded as clap's errors: {err}"
    );
}

#[test]
fn plan_and_sweep_read_a_capture_once_per_run_so_not_from_standard_input() {
    let out = scratch("usage-stdin");
    let out = out.to_str().unwrap();
    refused(
        &["plan", "-"],
        "`plsim plan` reads its capture once per run",
    );
    refused(
        &["sweep", "-", "--out", out],
        "`plsim sweep` reads its capture once per run",
    );
    // One point reads it once: standard input is fine there (tests/sweep_cluster.rs runs it).
}

#[test]
fn a_generated_capture_has_at_most_u32_max_flows() {
    let out = scratch("usage-generate").join("c.pcap");
    refused(
        &[
            "generate",
            "conversations",
            "--flows",
            "5000000000",
            "--out",
            out.to_str().unwrap(),
        ],
        "--flows 5000000000: at most 4294967295",
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_sweeps_values_say_what_is_wrong_with_them() {
    let out = scratch("usage-sweep");
    let out = out.to_str().unwrap();
    refused(
        &["sweep", "--ports", "5-4", "--out", out],
        "`5-4` is not a port range",
    );
    refused(
        &["sweep", "--allocators", "x", "--out", out],
        "not a valid allocator",
    );
    refused(
        &["sweep", "--idle", "0", "--out", out],
        "the idle timeout is 4 to 6000 seconds",
    );
}
