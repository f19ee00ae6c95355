//! The files around a run: scenario files in; summaries, captures, time series and plots out,
//! each through a [`Partial`] (created exclusively under a partial name, renamed once whole),
//! into a directory the run holds ([`OutDir`]), the summary last.

use std::path::{Path, PathBuf};

use plsim_control::Scenario;

use crate::path::Overrides;
use crate::replay::{PacketSource, PcapTaps};
use crate::series::{Sample, series_csv};
use crate::summary::Summary;
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};

/// Reads and checks a scenario file: every problem, with its line.
pub fn read_scenario(file: &Path) -> Result<Scenario> {
    // Past the largest file read, one byte more says it is too large.
    let most = plsim_control::scenario::MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    File::open(file)
        .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, most), &mut bytes))
        .map_err(|e| Error::io(file, &e))?;
    Scenario::from_toml_bytes(&bytes).map_err(|problems| Error::Scenario {
        name: file.display().to_string(),
        problems,
    })
}

/// The scenario of a run: a file, or the built-in scenario; the overrides applied; checked.
pub fn load_scenario(file: Option<&Path>, overrides: &Overrides) -> Result<Scenario> {
    let (name, mut scenario) = match file {
        None => ("the built-in scenario".to_owned(), Scenario::builtin()),
        Some(f) => (f.display().to_string(), read_scenario(f)?),
    };
    overrides.apply(&mut scenario)?;
    scenario.validate().map_err(|problems| Error::Scenario {
        name: format!("{name} with the flags given"),
        problems,
    })?;
    Ok(scenario)
}

/// Where `path` is written until it is whole: beside it, `NAME.partial.EXT` (a capture still
/// opens as one, and nobody takes it for the finished file).
pub fn partial(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(Default::default, |s| s.to_string_lossy());
    let name = match path.extension() {
        Some(ext) => format!("{stem}.partial.{}", ext.to_string_lossy()),
        None => format!("{stem}.partial"),
    };
    path.with_file_name(name)
}

/// An output file being written: created exclusively under its [`partial`] name, in the
/// directory of its own name, and renamed over that name by [`Partial::keep`] once whole.
/// Whatever was at the partial name (a link, a crashed run's file) is removed first, never
/// opened: removing a link removes the link, not its target; and the exclusive create never
/// follows a link nor reuses a file. The rename replaces whatever is at the final name, a link
/// included, never writing through it. Dropped before [`Partial::keep`], the partial file is
/// removed: nothing half written is left.
#[derive(Debug)]
pub struct Partial {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    kept: bool,
}

impl Partial {
    /// Starts writing `path`; the error names `path`.
    pub fn create(path: &Path) -> Result<Partial> {
        Partial::open(path).map_err(|e| Error::io(path, &e))
    }

    /// [`Partial::create`], for writers whose errors are `io::Error`s (the error is worded,
    /// for [`Error::io`] on `path`).
    pub fn open(path: &Path) -> io::Result<Partial> {
        // A device, a pipe or a directory under the final name (or behind a link there) is
        // not an output plsim replaces.
        if let Ok(m) = std::fs::metadata(path)
            && !m.is_file()
        {
            return Err(not_a_file(&m));
        }
        let tmp = partial(path);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::other(format!(
                    "{} is in the way: {}",
                    tmp.display(),
                    crate::error::reason(&e)
                )));
            }
        }
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(Partial {
            file,
            tmp,
            path: path.to_path_buf(),
            kept: false,
        })
    }

    /// Gives the file its name, now that it is whole (everything written to it, flushed).
    /// Refused, naming the file, when its partial name no longer holds this file (a run
    /// writing the same file at the same time removed it).
    pub fn keep(mut self) -> Result<()> {
        if !self.ours() {
            self.kept = true; // Not ours to remove either.
            return Err(Error::io(
                &self.path,
                &io::Error::other("written by another run at the same time"),
            ));
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, &e))?;
        self.kept = true;
        Ok(())
    }

    /// Whether the partial name still holds this very file.
    fn ours(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let (Ok(there), Ok(mine)) =
                (std::fs::symlink_metadata(&self.tmp), self.file.metadata())
            else {
                return false;
            };
            there.dev() == mine.dev() && there.ino() == mine.ino()
        }
        #[cfg(not(unix))]
        std::fs::symlink_metadata(&self.tmp).is_ok()
    }
}

/// Why what is at an output's name (`m`, not a regular file) is not replaced, in words.
fn not_a_file(m: &std::fs::Metadata) -> io::Error {
    let what = if m.is_dir() {
        "a directory is in the way"
    } else {
        "not a regular file"
    };
    io::Error::other(format!("{what}: plsim replaces files only"))
}

impl Write for Partial {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept && self.ours() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `path` whole or not at all through a [`Partial`]: `write` writes it, which is then
/// renamed over `path`; on any error the partial file is removed. Errors name `path`.
pub fn write_whole<T>(path: &Path, write: impl FnOnce(&mut Partial) -> Result<T>) -> Result<T> {
    let mut file = Partial::create(path)?;
    let v = write(&mut file)?;
    file.keep()?;
    Ok(v)
}

/// Writes a file whole or not at all (see [`write_whole`]), naming it in the error.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_whole(path, |f| {
        f.write_all(bytes).map_err(|e| Error::io(path, &e))
    })
}

/// Creates a directory (and its parents), naming it in the error.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))
}

/// The outputs of a replay or a simulation (`--out`), `summary.json` first: what
/// [`OutDir::clear`] removes before such a run writes any (a run without captures leaves none
/// of a previous run's beside its summary).
pub const RUN_OUTPUTS: [&str; 6] = [
    "summary.json",
    "consumer.pcap",
    "backend.pcap",
    "timeseries.csv",
    "timeseries.svg",
    "timeseries.png",
];

/// An output directory held by a run until it is dropped: an advisory lock on the directory
/// itself (`flock`), exclusive for a run whose outputs are the directory's (a replay, a
/// simulation, a sweep, a merge), shared for one that writes one file of its own into it (a
/// point, a generated capture). A directory another run holds is refused ([`Error::InUse`]):
/// two runs' outputs never mix.
#[derive(Debug)]
pub struct OutDir {
    dir: PathBuf,
    _lock: Option<File>,
}

impl OutDir {
    /// Creates `dir` if needed and holds it for this run alone. With a warning when the
    /// file system can't lock it (the run goes on, unguarded).
    pub fn alone(dir: &Path) -> Result<(OutDir, Option<String>)> {
        create_dir(dir)?;
        OutDir::hold(dir, false)
    }

    /// Holds `dir` (which must exist) with other runs that write files of their own into it.
    pub fn shared(dir: &Path) -> Result<(OutDir, Option<String>)> {
        OutDir::hold(dir, true)
    }

    fn hold(dir: &Path, shared: bool) -> Result<(OutDir, Option<String>)> {
        let file = File::open(dir).map_err(|e| Error::io(dir, &e))?;
        let locked = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        let held = |lock| OutDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        match locked {
            Ok(()) => Ok((held(Some(file)), None)),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::InUse {
                dir: dir.to_path_buf(),
            }),
            Err(std::fs::TryLockError::Error(e)) => Ok((
                held(None),
                Some(format!(
                    "{}: can't be locked ({}): another run into it would not be refused",
                    dir.display(),
                    crate::error::reason(&e)
                )),
            )),
        }
    }

    /// Removes what a previous run left under these names (a link: the link, not its
    /// target), the first first. A directory in the way is an error naming it.
    pub fn clear(&self, names: &[&str]) -> Result<()> {
        for name in names {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let why = match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => not_a_file(&m),
                        _ => e,
                    };
                    return Err(Error::io(&path, &why));
                }
            }
        }
        Ok(())
    }
}

/// Writes a run's outputs but its summary into `dir`: the captures its taps wrote (see
/// [`PcapTaps::finish_in_dir`]), `timeseries.csv` and its plot; `summary.json` comes after
/// them (see [`write_summary`]), so that its presence means they are whole. Returns the
/// warnings: frames of another link type left out of the captures.
pub fn write_run(
    dir: &Path,
    taps: Option<PcapTaps<BufWriter<Partial>>>,
    series: &[Sample],
    title: &str,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if let Some(taps) = taps {
        let written = taps.finish_in_dir()?;
        if written.skipped > 0 {
            warnings.push(format!(
                "{} frames of another link type left out of the pcaps",
                written.skipped
            ));
        }
    }
    write_file(&dir.join("timeseries.csv"), series_csv(series).as_bytes())?;
    crate::plot::series(&dir.join("timeseries"), title, series)?;
    Ok(warnings)
}

/// Writes `summary.json` into `dir`: last, once every other output of the run is whole.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<PathBuf> {
    write_json(dir, "summary.json", summary)
}

/// Writes every packet of a source (Ethernet frames) to a classic pcap, whole or not at all
/// (see [`write_whole`]); returns how many. Stopped on request (`stop`), it writes nothing:
/// [`Error::Interrupted`].
pub fn write_capture<S: PacketSource>(
    path: &Path,
    source: &mut S,
    stop: Option<&crate::stop::Stop>,
) -> Result<u64> {
    write_whole(path, |file| {
        let io = |e: io::Error| Error::io(path, &e);
        let mut w =
            plsim_pcap::Writer::new(BufWriter::new(file), plsim_wire::LinkType::Ethernet, 65535)
                .map_err(io)?;
        while let Some(p) = source.next_packet() {
            if stop.is_some_and(crate::stop::Stop::requested) {
                return Err(Error::Interrupted(format!(
                    "{} not written",
                    path.display()
                )));
            }
            let f = p.frame;
            w.write(f.ts_ns, f.data, f.wire_len).map_err(io)?;
        }
        let n = w.packets();
        w.finish()
            .map_err(io)?
            .into_inner()
            .map_err(|e| io(e.into_error()))?;
        Ok(n)
    })
}

/// Writes `value` as `out/name` (a point's result, a summary), pretty JSON, whole or not at
/// all, creating `out` if needed; returns the file's path.
pub fn write_json<T: serde::Serialize>(out: &Path, name: &str, value: &T) -> Result<PathBuf> {
    create_dir(out)?;
    let file = out.join(name);
    let text = serde_json::to_string_pretty(value).expect("results serialize") + "\n";
    write_file(&file, text.as_bytes())?;
    Ok(file)
}
