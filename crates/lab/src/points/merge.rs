//! Point results merged into the run they are the points of, in index order, after the checks
//! that they are all there, once each, and of one run.

use std::path::{Path, PathBuf};

use super::{Command, PointFile};

/// Why point results can't be merged, naming the files (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No result file in the directories given.
    #[error("{}", empty(*.command, .dirs))]
    Empty {
        /// The command merging.
        command: Command,
        /// The directories read.
        dirs: Vec<PathBuf>,
    },
    /// A file that is not a point result.
    #[error("{}: not a point result: {error}", .file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// What the JSON parser found.
        #[source]
        error: serde_json::Error,
    },
    /// A point of another command.
    #[error("{} is a point of `plsim {found}`, not of `plsim {expected}`", .file.display())]
    OtherCommand {
        /// The file.
        file: PathBuf,
        /// The command that wrote it.
        found: Command,
        /// The command merging.
        expected: Command,
    },
    /// A point of another run: another grid, scenario, flags, capture or version of plsim.
    #[error(
        "{} is from another {command} than {} (fingerprint {fingerprint} against {first_fingerprint})",
        .file.display(),
        .first.display()
    )]
    Foreign {
        /// The command merging.
        command: Command,
        /// The file.
        file: PathBuf,
        /// The first file, which the others are held to.
        first: PathBuf,
        /// The file's fingerprint.
        fingerprint: String,
        /// The first file's.
        first_fingerprint: String,
    },
    /// Two points that name their input differently (the same capture, from a file and from
    /// standard input): the merged result names it, so it must be one name.
    #[error(
        "{} and {} name their input differently (`{input}`, `{first_input}`): give every point \
         the capture the same way (a file of the same name, or standard input)",
        .file.display(),
        .first.display()
    )]
    NamedDifferently {
        /// The file.
        file: PathBuf,
        /// The first file.
        first: PathBuf,
        /// The file's name for its input.
        input: String,
        /// The first file's.
        first_input: String,
    },
    /// A point past the last of its run.
    #[error("{}: {}", .file.display(), super::no_such_point(*.command, *.index, *.points))]
    OutOfRange {
        /// The command merging.
        command: Command,
        /// The file.
        file: PathBuf,
        /// Its point.
        index: usize,
        /// The points of its run.
        points: usize,
    },
    /// A point there twice.
    #[error(
        "{} is there twice: {} and {}",
        .command.point(*.index),
        .first.display(),
        .second.display()
    )]
    Doubled {
        /// The command merging.
        command: Command,
        /// The point.
        index: usize,
        /// Where it was first.
        first: PathBuf,
        /// Where it was again.
        second: PathBuf,
    },
    /// Points that are not there.
    #[error("{}", missing_text(*.command, *.points, .missing))]
    Missing {
        /// The command merging.
        command: Command,
        /// The points of the run.
        points: usize,
        /// The indices of those missing, in order.
        missing: Vec<usize>,
    },
}

/// No result file, in words.
fn empty(command: Command, dirs: &[PathBuf]) -> String {
    let files = format!("{}K.json", command.prefix());
    if dirs.is_empty() {
        return format!("no point results to merge ({files})");
    }
    let dirs: Vec<String> = dirs.iter().map(|p| p.display().to_string()).collect();
    format!(
        "no point results to merge: no {files} in {}",
        dirs.join(", ")
    )
}

/// The points missing, in words.
fn missing_text(command: Command, points: usize, missing: &[usize]) -> String {
    match command {
        Command::Sweep => format!(
            "{} of the {points} points are missing: {}",
            missing.len(),
            ranges(missing)
        ),
        Command::Plan => {
            let counts: Vec<String> = missing.iter().map(|i| (i + 1).to_string()).collect();
            let indices: Vec<String> = missing.iter().map(ToString::to_string).collect();
            format!(
                "the replays with {} NAT IPs are missing (points {})",
                counts.join(", "),
                indices.join(", ")
            )
        }
    }
}

/// Sorted indices as ranges: `0-3, 7, 9-10`.
fn ranges(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The points of one run, merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged<R> {
    /// The input's name, as every point gives it.
    pub input: String,
    /// Every point's result, in index order.
    pub results: Vec<R>,
    /// The file of each, in the same order.
    pub files: Vec<PathBuf>,
}

/// Merges the point results of one run of `command` (as [`read`](super::read) gives them):
/// every point once, in index order. Refused when a result is another command's or another
/// run's, names its input differently, is past the run's last point or there twice, or when
/// some are missing; every file is held to the first.
pub fn merge<R>(
    command: Command,
    files: Vec<(PathBuf, PointFile<R>)>,
) -> Result<Merged<R>, MergeError> {
    let Some((first_file, first)) = files.first() else {
        return Err(MergeError::Empty {
            command,
            dirs: Vec::new(),
        });
    };
    let (first_file, points, fingerprint, input) = (
        first_file.clone(),
        first.points,
        first.fingerprint.clone(),
        first.input.clone(),
    );
    let mut slots: Vec<Option<(PathBuf, R)>> = (0..points).map(|_| None).collect();
    for (file, p) in files {
        check(
            command,
            &file,
            &p,
            (&first_file, points, &fingerprint, &input),
        )?;
        let Some(slot) = slots.get_mut(p.index) else {
            return Err(MergeError::OutOfRange {
                command,
                file,
                index: p.index,
                points,
            });
        };
        if let Some((before, _)) = slot {
            return Err(MergeError::Doubled {
                command,
                index: p.index,
                first: before.clone(),
                second: file,
            });
        }
        *slot = Some((file, p.result));
    }
    let missing: Vec<usize> = (0..points).filter(|&i| slots[i].is_none()).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            command,
            points,
            missing,
        });
    }
    let (files, results) = slots.into_iter().flatten().unzip();
    Ok(Merged {
        input,
        results,
        files,
    })
}

/// One point held to the first: the same command, run and input name.
fn check<R>(
    command: Command,
    file: &Path,
    p: &PointFile<R>,
    (first, points, fingerprint, input): (&Path, usize, &str, &str),
) -> Result<(), MergeError> {
    if p.command != command {
        return Err(MergeError::OtherCommand {
            file: file.to_path_buf(),
            found: p.command,
            expected: command,
        });
    }
    if p.fingerprint != fingerprint || p.points != points {
        return Err(MergeError::Foreign {
            command,
            file: file.to_path_buf(),
            first: first.to_path_buf(),
            fingerprint: p.fingerprint.clone(),
            first_fingerprint: fingerprint.to_owned(),
        });
    }
    if p.input != input {
        return Err(MergeError::NamedDifferently {
            file: file.to_path_buf(),
            first: first.to_path_buf(),
            input: p.input.clone(),
            first_input: input.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(index: usize, fingerprint: &str) -> (PathBuf, PointFile<usize>) {
        (
            PathBuf::from(format!("d/point-{index}.json")),
            PointFile {
                command: Command::Sweep,
                fingerprint: fingerprint.into(),
                index,
                points: 12,
                input: "x.pcap".into(),
                result: index * 10,
            },
        )
    }

    fn all() -> Vec<(PathBuf, PointFile<usize>)> {
        (0..12).rev().map(|i| point(i, "f")).collect()
    }

    #[test]
    fn every_point_once_merges_in_index_order() {
        let m = merge(Command::Sweep, all()).unwrap();
        assert_eq!(m.input, "x.pcap");
        assert_eq!(m.results, (0..12).map(|i| i * 10).collect::<Vec<_>>());
    }

    #[test]
    fn missing_doubled_and_foreign_points_are_refused_by_name() {
        let some: Vec<_> = all()
            .into_iter()
            .filter(|(_, p)| ![0, 1, 2, 3, 7, 9, 10].contains(&p.index))
            .collect();
        let e = merge(Command::Sweep, some).unwrap_err();
        assert_eq!(
            e.to_string(),
            "7 of the 12 points are missing: 0-3, 7, 9-10"
        );
        let mut twice = all();
        twice.push((PathBuf::from("e/point-4.json"), point(4, "f").1));
        assert_eq!(
            merge(Command::Sweep, twice).unwrap_err().to_string(),
            "point 4 is there twice: d/point-4.json and e/point-4.json"
        );
        let mut foreign = all();
        foreign[3] = point(8, "g");
        assert_eq!(
            merge(Command::Sweep, foreign).unwrap_err().to_string(),
            "d/point-8.json is from another sweep than d/point-11.json (fingerprint g against f)"
        );
        let mut renamed = all();
        renamed[1].1.input = "standard input".into();
        assert!(matches!(
            merge(Command::Sweep, renamed).unwrap_err(),
            MergeError::NamedDifferently { .. }
        ));
        let mut past = all();
        past[0].1.index = 12;
        assert_eq!(
            merge(Command::Sweep, past).unwrap_err().to_string(),
            "d/point-11.json: point 12: the sweep has 12 points, 0 to 11"
        );
        let mut other = all();
        other[5].1.command = Command::Plan;
        assert!(matches!(
            merge(Command::Sweep, other).unwrap_err(),
            MergeError::OtherCommand { .. }
        ));
    }

    #[test]
    fn a_plan_names_its_missing_points_by_nat_ip_count() {
        let files: Vec<_> = [0, 1, 2, 5]
            .into_iter()
            .map(|i| {
                let (_, mut p) = point(i, "f");
                p.command = Command::Plan;
                p.points = 8;
                (PathBuf::from(Command::Plan.file(i)), p)
            })
            .collect();
        assert_eq!(
            merge(Command::Plan, files).unwrap_err().to_string(),
            "the replays with 4, 5, 7, 8 NAT IPs are missing (points 3, 4, 6, 7)"
        );
        assert_eq!(
            merge::<usize>(Command::Plan, Vec::new())
                .unwrap_err()
                .to_string(),
            "no point results to merge (plan-point-K.json)"
        );
    }
}
