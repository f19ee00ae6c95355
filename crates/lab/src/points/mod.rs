//! Commands whose work splits into points that run apart, on any machines, in any order, and
//! merge back into what one machine gives (`plsim sweep`, `plsim plan`): the list of the points
//! (`--list`), one point's result file (`--point K`), and the merge (`merge`), which refuses,
//! naming the files, results that are missing, there twice, of another command or of another
//! run ([`MergeError`]). What ties a point's result to its run is its [`fingerprint`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub mod fingerprint;
mod merge;

pub use merge::{MergeError, Merged, merge};

/// A command that splits into points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// `plsim sweep`: a point is one combination of the grid's settings.
    Sweep,
    /// `plsim plan`: point K is a replay with K + 1 NAT IPs.
    Plan,
}

impl Command {
    /// The name of point `index`'s result file: `point-K.json` (a sweep's),
    /// `plan-point-K.json` (a plan's).
    pub fn file(self, index: usize) -> String {
        format!("{}{index}.json", self.prefix())
    }

    /// What every result file of the command starts with.
    fn prefix(self) -> &'static str {
        match self {
            Command::Sweep => "point-",
            Command::Plan => "plan-point-",
        }
    }

    /// Point `index` in words.
    fn point(self, index: usize) -> String {
        match self {
            Command::Sweep => format!("point {index}"),
            Command::Plan => format!("point {index} ({} NAT IPs)", index + 1),
        }
    }

    /// What a run of `points` points has, in words: "the sweep has 16 points, 0 to 15".
    fn has(self, points: usize) -> String {
        let last = points.saturating_sub(1);
        match self {
            Command::Sweep => format!("the sweep has {points} points, 0 to {last}"),
            Command::Plan => {
                format!("the plan has {points} points (1 to {points} NAT IPs), 0 to {last}")
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Sweep => "sweep",
            Command::Plan => "plan",
        })
    }
}

/// A point the command does not have, in words (see [`Error::NoSuchPoint`]).
pub(crate) fn no_such_point(command: Command, index: usize, points: usize) -> String {
    format!("point {index}: {}", command.has(points))
}

/// Ok when `index` is one of `points` points; [`Error::NoSuchPoint`] (exit 2) when not.
pub fn check_index(command: Command, index: usize, points: usize) -> Result<()> {
    if index < points {
        Ok(())
    } else {
        Err(Error::NoSuchPoint {
            command,
            index,
            points,
        })
    }
}

/// One point's result as `--point K` writes it and `merge` reads it back: the same envelope
/// for every command, around the command's own result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointFile<R> {
    /// The command that ran it.
    pub command: Command,
    /// The fingerprint of everything the point's run depends on but its index (see
    /// [`fingerprint`]): every point of one run carries the same.
    pub fingerprint: String,
    /// The point's index.
    pub index: usize,
    /// How many points the run has.
    pub points: usize,
    /// The input's name for people: the capture's file name (see [`input_name`]), or the
    /// synthetic workload.
    pub input: String,
    /// The point's result.
    pub result: R,
}

/// A point run alone (`--point K`): its result, and what was wrong with its capture.
#[derive(Clone, Debug)]
pub struct Ran<R> {
    /// The point's result; `None` when it was stopped before its end.
    pub result: Option<PointFile<R>>,
    /// The capture's reader's warning when it was cut short or damaged after its first packet
    /// and read up to there (the result is marked `truncated`), as `replay` gives it.
    pub warning: Option<String>,
}

impl<R: Serialize> PointFile<R> {
    /// Writes it into `dir` (created if needed) under its name ([`Command::file`]), pretty
    /// JSON, whole or not at all; returns the file's path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        crate::files::write_json(dir, &self.command.file(self.index), self)
    }
}

/// A capture's name for people: its file name (the nodes of a cluster may mount it in
/// different places), or "standard input".
pub fn input_name(capture: &Path) -> String {
    if capture == Path::new(plsim_pcap::STDIN) {
        "standard input".to_owned()
    } else {
        capture
            .file_name()
            .map_or(capture.as_os_str(), |n| n)
            .to_string_lossy()
            .into_owned()
    }
}

/// `--list`: a JSON line per point, its settings and its index.
pub fn list<P: Serialize>(points: &[P]) -> String {
    let mut out = String::new();
    for (index, p) in points.iter().enumerate() {
        let mut line = serde_json::to_value(p).expect("a point serializes");
        line["index"] = index.into();
        out += &format!("{line}\n");
    }
    out
}

/// Every result file of `command` in `dirs` (partial files left out), in name order within
/// each directory, read with its path. Refused when there is none, when one can't be read as a
/// point result, and when one is another command's.
pub fn read<R: DeserializeOwned>(
    command: Command,
    dirs: &[PathBuf],
) -> Result<Vec<(PathBuf, PointFile<R>)>> {
    let mut results = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(command.prefix())
                        && n.ends_with(".json")
                        && !n.contains(".partial.")
                })
            })
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, &e))?;
            let point = parse(command, &file, &text)?;
            results.push((file, point));
        }
    }
    if results.is_empty() {
        return Err(MergeError::Empty {
            command,
            dirs: dirs.to_vec(),
        }
        .into());
    }
    Ok(results)
}

/// One result file's text as a point of `command`.
fn parse<R: DeserializeOwned>(
    command: Command,
    file: &Path,
    text: &str,
) -> Result<PointFile<R>, MergeError> {
    let unreadable = |error| MergeError::Unreadable {
        file: file.to_path_buf(),
        error,
    };
    // The envelope first, so that another command's point is named as such.
    let p: PointFile<serde_json::Value> = serde_json::from_str(text).map_err(unreadable)?;
    if p.command != command {
        return Err(MergeError::OtherCommand {
            file: file.to_path_buf(),
            found: p.command,
            expected: command,
        });
    }
    Ok(PointFile {
        result: serde_json::from_value(p.result).map_err(unreadable)?,
        command: p.command,
        fingerprint: p.fingerprint,
        index: p.index,
        points: p.points,
        input: p.input,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_a_json_line_per_point_with_its_index() {
        #[derive(Serialize)]
        struct P {
            nat_ips: usize,
        }
        assert_eq!(
            list(&[P { nat_ips: 1 }, P { nat_ips: 2 }]),
            "{\"index\":0,\"nat_ips\":1}\n{\"index\":1,\"nat_ips\":2}\n"
        );
    }

    #[test]
    fn a_point_file_reads_back_and_another_commands_is_named() {
        let p = PointFile {
            command: Command::Plan,
            fingerprint: "f".into(),
            index: 2,
            points: 8,
            input: "x.pcap".into(),
            result: vec![1u64, 2],
        };
        let text = serde_json::to_string(&p).unwrap();
        let file = Path::new("d/plan-point-2.json");
        assert_eq!(parse::<Vec<u64>>(Command::Plan, file, &text).unwrap(), p);
        let e = parse::<Vec<u64>>(Command::Sweep, file, &text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d/plan-point-2.json is a point of `plsim plan`, not of `plsim sweep`"
        );
        let e = parse::<String>(Command::Plan, file, &text).unwrap_err();
        assert!(matches!(e, MergeError::Unreadable { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("d/plan-point-2.json: not a point result: "),
            "{e}"
        );
    }

    #[test]
    fn an_index_past_the_last_point_is_refused_with_the_range() {
        assert!(check_index(Command::Sweep, 15, 16).is_ok());
        let e = check_index(Command::Sweep, 16, 16).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(e.to_string(), "point 16: the sweep has 16 points, 0 to 15");
        let e = check_index(Command::Plan, 9, 8).unwrap_err();
        assert_eq!(
            e.to_string(),
            "point 9: the plan has 8 points (1 to 8 NAT IPs), 0 to 7"
        );
    }
}
