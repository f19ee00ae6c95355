//! The one error of everything the binary runs. Its variant decides the exit status (the
//! README's "Exit status"): 1 when an input can't be used, 2 for wrong usage, 130 after an
//! interrupt.

use std::io;
use std::path::{Path, PathBuf};

use plsim_control::Problems;

/// What went wrong, with the file or flag it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `plsim bench` was asked for more flows than its scenario can give NAT ports to (exit 2).
    #[error(
        "--flows {flows}: the bench's scenario holds at most {max_flows} flows ({max_backends} \
         backends, each with 8 NAT IPs of 64,512 ports, filled to {fill_percent}%)"
    )]
    BenchTooManyFlows {
        /// The flows asked for.
        flows: u64,
        /// The most flows the scenario holds.
        max_flows: u64,
        /// The most backends it has room for.
        max_backends: u64,
        /// How full it lets a backend's ports get, in percent.
        fill_percent: u32,
    },
    /// `--nat-ips N` with N outside 1 to 8 (exit 2).
    #[error(
        "--nat-ips {asked}: a service has 1 to {} NAT IPs",
        plsim_snat::MAX_NAT_IPS
    )]
    NatIpCount {
        /// The count asked for.
        asked: u8,
    },
    /// `--nat-ips N` with more NAT IPs than a service of the scenario has (exit 2).
    #[error("--nat-ips {asked}: service `{service}` has only {has} NAT IPs")]
    TooFewNatIps {
        /// The count asked for.
        asked: u8,
        /// The service.
        service: String,
        /// How many it has.
        has: usize,
    },
    /// A flag asks for more than the run can serve (exit 2): the flag, its value and the limit
    /// in words.
    #[error("{flag} {value}: {limit}")]
    Beyond {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// The limit, in words.
        limit: String,
    },
    /// A flag asks for a run that needs more memory than this machine has for it (exit 2):
    /// what it needs against what there is.
    #[error(
        "{flag} {count} needs about {} ({} {each}); {available}",
        crate::memory::bytes_in_words(*.needs),
        crate::memory::bytes_in_words(*.per_item)
    )]
    Memory {
        /// The flag.
        flag: &'static str,
        /// Its value: how many.
        count: u64,
        /// The bytes the run needs.
        needs: u64,
        /// The bytes each one needs.
        per_item: u64,
        /// What one is, with its article ("a flow").
        each: &'static str,
        /// What the machine has.
        available: crate::memory::Available,
    },
    /// A workload setting from the flags that can't be used (exit 2).
    #[error(transparent)]
    Workload(#[from] plsim_traffic::workload::SpecError),
    /// A file that can't be read or written (exit 1).
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// An output directory another run holds (exit 1): two runs' outputs would mix.
    #[error(
        "{}: in use by another plsim run (a directory takes one run's outputs at a time)",
        dir.display()
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
    },
    /// A capture that can't be read (exit 1).
    #[error(transparent)]
    Capture(#[from] plsim_pcap::ReadError),
    /// A scenario that fails validation, with every problem (exit 1).
    #[error("{}", problems_text(.name, .problems))]
    Scenario {
        /// The file, or "the built-in scenario".
        name: String,
        /// Every problem, with its place.
        problems: Problems,
    },
    /// A scenario that validates but can't be run as asked (exit 1).
    #[error("{0}")]
    Input(String),
    /// The control plane refused an operation (exit 1).
    #[error(transparent)]
    Control(#[from] plsim_control::ControlError),
    /// The SNAT engine refused its configuration (exit 1).
    #[error(transparent)]
    Snat(#[from] plsim_snat::ConfigError),
    /// The endpoint stage refused the scenario's endpoints (exit 1).
    #[error(transparent)]
    Endpoint(#[from] plsim_endpoint::EndpointError),
    /// The load balancer refused its configuration (exit 1).
    #[error(transparent)]
    Lb(#[from] plsim_lb::ConfigError),
    /// The real TCP endpoints could not run (exit 1).
    #[error(transparent)]
    Tcp(#[from] plsim_traffic::tcp::EchoError),
    /// A point that the command does not have: an index past its last point (exit 2).
    #[error("{}", crate::points::no_such_point(*.command, *.index, *.points))]
    NoSuchPoint {
        /// The command.
        command: crate::points::Command,
        /// The index asked for.
        index: usize,
        /// The points the command has.
        points: usize,
    },
    /// Point results that can't be merged, naming the files (exit 1).
    #[error(transparent)]
    Merge(#[from] crate::points::MergeError),
    /// A plot that could not be drawn (exit 1); one that could not be written is an `Io`
    /// error.
    #[error("{}: {why}", file.display())]
    Plot {
        /// The file it was to be drawn in.
        file: PathBuf,
        /// Why.
        why: crate::plot::PlotFailure,
    },
    /// Stopped by Ctrl-C or SIGTERM once what was processed is reported and written (exit 130).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// The exit status this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Workload(_)
            | Error::Beyond { .. }
            | Error::Memory { .. }
            // The one TCP-mode refusal a flag makes alone; the others are the scenario's
            // addresses (see the tests below).
            | Error::Tcp(plsim_traffic::tcp::EchoError::TooManyConnections { .. })
            | Error::BenchTooManyFlows { .. }
            | Error::NoSuchPoint { .. }
            | Error::NatIpCount { .. }
            | Error::TooFewNatIps { .. } => 2,
            Error::Interrupted(_) => 130,
            _ => 1,
        }
    }

    /// An I/O error on `path`, in words a user reads ("no such file", "permission denied").
    pub fn io(path: &Path, e: &io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            reason: reason(e),
        }
    }
}

/// An I/O error in words a user reads: "no such file", "permission denied", or the system's
/// own words without their "(os error N)".
pub(crate) fn reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => {
            // Drop the "(os error N)" tail: the words say it.
            let s = e.to_string();
            match s.find(" (os error") {
                Some(at) => s[..at].to_owned(),
                None => s,
            }
        }
    }
}

/// One problem on one line; several as a list under the file's name.
fn problems_text(name: &str, problems: &Problems) -> String {
    let lines: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
    if lines.len() == 1 {
        format!("{name}: {}", lines[0])
    } else {
        let mut s = format!("{name}: {} problems:", lines.len());
        for l in lines {
            s.push_str("\n  ");
            s.push_str(&l);
        }
        s
    }
}

/// The result of everything the binary runs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use plsim_traffic::tcp::EchoError;

    use super::Error;

    /// Every refusal of a TCP run's spec, and its exit status: 2 when the flags alone make it
    /// (more connections than client ports), 1 when it comes from the scenario (its pool, its
    /// addresses) or can't happen from the command line (the buffers and ports are fixed).
    #[test]
    fn each_tcp_spec_error_has_its_exit_status() {
        let ip = Ipv4Addr::new(10, 0, 0, 4);
        for (e, code) in [
            (
                EchoError::TooManyConnections {
                    connections: u32::MAX,
                    capacity: 6_384_000,
                },
                2,
            ),
            (EchoError::NoBackends, 1),
            (EchoError::NoClientHosts, 1),
            (EchoError::PortZero("the endpoint"), 1),
            (EchoError::AddressClash(ip), 1),
            (EchoError::ClientsOverflow(ip, 250), 1),
            (EchoError::BufferTooSmall(100), 1),
        ] {
            assert_eq!(Error::Tcp(e.clone()).exit_code(), code, "{e}");
        }
    }
}
