//! The files around a run: scenario files in, summaries, time series and plots out.

use std::path::{Path, PathBuf};

use plsim_control::Scenario;

use crate::path::Overrides;
use crate::replay::{PacketSource, PcapTaps};
use crate::series::{Sample, series_csv};
use crate::summary::Summary;
use crate::{Error, Result};
use std::fs::File;
use std::io::BufWriter;

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

/// Writes `path` whole or not at all: `write` writes its [`partial`] name, which is then
/// renamed over `path`; on any error the partial file is removed and the error names `path`.
pub fn write_whole<T>(path: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = partial(path);
    let done = write(&tmp).and_then(|v| {
        std::fs::rename(&tmp, path)
            .map(|()| v)
            .map_err(|e| Error::io(path, &e))
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Writes a file whole or not at all (see [`write_whole`]), naming it in the error.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_whole(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| Error::io(path, &e))
    })
}

/// Creates a directory (and its parents), naming it in the error.
pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))
}

/// Writes a run's outputs into `dir`: the captures its taps wrote (given their names; see
/// [`PcapTaps::finish_in_dir`]), `summary.json`, `timeseries.csv` and its plot. Returns the
/// warnings: frames of another link type left out of the captures, a plot that could not be
/// drawn.
pub fn write_run(
    dir: &Path,
    taps: Option<PcapTaps<BufWriter<File>>>,
    summary: &Summary,
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
    write_json(dir, "summary.json", summary)?;
    write_file(&dir.join("timeseries.csv"), series_csv(series).as_bytes())?;
    if let Err(e) = crate::plot::series(&dir.join("timeseries"), title, series) {
        warnings.push(format!("no time series plot: {e}"));
    }
    Ok(warnings)
}

/// Writes every packet of a source (Ethernet frames) to a classic pcap, whole or not at all;
/// returns how many.
pub fn write_capture<S: PacketSource>(path: &Path, source: &mut S) -> Result<u64> {
    write_whole(path, |tmp| write_capture_to(tmp, path, source))
}

fn write_capture_to<S: PacketSource>(tmp: &Path, path: &Path, source: &mut S) -> Result<u64> {
    let io = |e: std::io::Error| Error::io(path, &e);
    let file = std::fs::File::create(tmp).map_err(io)?;
    let mut w = plsim_pcap::Writer::new(
        std::io::BufWriter::new(file),
        plsim_wire::LinkType::Ethernet,
        65535,
    )
    .map_err(io)?;
    while let Some(p) = source.next_packet() {
        let f = p.frame;
        w.write(f.ts_ns, f.data, f.wire_len).map_err(io)?;
    }
    let n = w.packets();
    w.finish()
        .map_err(io)?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    Ok(n)
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
