//! The taps: what the consumer side and the backend side saw, written as two pcap captures.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use plsim_pcap::Writer;
use plsim_wire::LinkType;

use plsim_engine::{Meta, Taps};

use crate::files::Partial;

/// Writes what each side saw to `consumer.pcap` and `backend.pcap` (classic pcap, ns
/// timestamps, the link type of the capture's first packet), in a directory or in memory.
/// Frames of another link type (a pcapng capture with several) are left out and counted.
pub struct PcapTaps<W: Write> {
    open: Box<Open<W>>,
    files: Option<Files<W>>,
    skipped: u64,
    /// The first error, with the name of the capture it hit.
    error: Option<(&'static str, io::Error)>,
    /// With [`PcapTaps::in_dir`], the directory.
    dir: Option<PathBuf>,
}

/// How a capture is opened, by its file name.
type Open<W> = dyn FnMut(&str) -> io::Result<W> + Send;

/// The link type of both files, the consumer's and the backend's.
type Files<W> = (LinkType, Writer<W>, Writer<W>);

/// What [`PcapTaps::finish`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Packets in `consumer.pcap`.
    pub consumer: u64,
    /// Packets in `backend.pcap`.
    pub backend: u64,
    /// Frames left out for their link type.
    pub skipped: u64,
}

impl PcapTaps<BufWriter<Partial>> {
    /// Taps that write `consumer.pcap` and `backend.pcap` into `dir` (which must exist) once
    /// the first packet shows the link type, each through a [`Partial`]: until
    /// [`finish_in_dir`](Self::finish_in_dir) they are `consumer.partial.pcap` and
    /// `backend.partial.pcap`, created exclusively, and a run cut short leaves nothing that
    /// looks finished.
    pub fn in_dir(dir: &Path) -> Self {
        let at: PathBuf = dir.to_path_buf();
        let mut taps = PcapTaps::new(move |name| {
            let file = Partial::open(&at.join(name))?;
            Ok(BufWriter::with_capacity(1 << 20, file))
        });
        taps.dir = Some(dir.to_path_buf());
        taps
    }

    /// Flushes both captures and gives them their names (`consumer.pcap`, `backend.pcap`).
    /// On an error, names the capture it hit; neither partial file is left behind (each is
    /// removed as its [`Partial`] is dropped).
    pub fn finish_in_dir(self) -> crate::Result<Written> {
        let dir = self.dir.clone().expect("taps made by in_dir");
        let error = |name: &str, e: io::Error| crate::Error::io(&dir.join(name), &e);
        let (written, c, b) = self.finish_named().map_err(|(name, e)| error(name, e))?;
        let mut files = Vec::with_capacity(CAPTURES.len());
        for (name, w) in CAPTURES.into_iter().zip([c, b]) {
            files.push(w.into_inner().map_err(|e| error(name, e.into_error()))?);
        }
        for file in files {
            file.keep()?;
        }
        Ok(written)
    }
}

/// The two captures the taps write.
const CAPTURES: [&str; 2] = ["consumer.pcap", "backend.pcap"];

impl PcapTaps<Vec<u8>> {
    /// Taps that keep both captures in memory.
    pub fn in_memory() -> Self {
        PcapTaps::new(|_| Ok(Vec::new()))
    }
}

impl<W: Write> PcapTaps<W> {
    /// Taps that open each capture (`consumer.pcap`, `backend.pcap`) with `open`.
    pub fn new(open: impl FnMut(&str) -> io::Result<W> + Send + 'static) -> Self {
        PcapTaps {
            open: Box::new(open),
            files: None,
            skipped: 0,
            error: None,
            dir: None,
        }
    }

    fn open(&mut self, link: LinkType) -> Result<Files<W>, (&'static str, io::Error)> {
        let [cn, bn] = CAPTURES;
        let c = (self.open)(cn)
            .and_then(|w| Writer::new(w, link, 262_144))
            .map_err(|e| (cn, e))?;
        let b = (self.open)(bn)
            .and_then(|w| Writer::new(w, link, 262_144))
            .map_err(|e| (bn, e))?;
        Ok((link, c, b))
    }

    fn write(&mut self, consumer: bool, frame: &[u8], meta: &Meta) {
        if self.error.is_some() {
            return;
        }
        if self.files.is_none() {
            match self.open(meta.linktype) {
                Ok(f) => self.files = Some(f),
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        let Some((link, c, b)) = self.files.as_mut() else {
            return;
        };
        if *link != meta.linktype {
            self.skipped += 1;
            return;
        }
        let (w, name) = if consumer {
            (c, CAPTURES[0])
        } else {
            (b, CAPTURES[1])
        };
        if let Err(e) = w.write(meta.ts.as_nanos(), frame, meta.wire_len as usize) {
            self.error = Some((name, e));
        }
    }

    /// Flushes both captures (creating empty ones if nothing was written) and hands them back
    /// (consumer, backend); the first error, if any, with the capture it hit.
    pub fn finish(self) -> io::Result<(Written, W, W)> {
        self.finish_named()
            .map_err(|(name, e)| io::Error::new(e.kind(), format!("{name}: {e}")))
    }

    fn finish_named(mut self) -> Result<(Written, W, W), (&'static str, io::Error)> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let (_, c, b) = match self.files.take() {
            Some(f) => f,
            None => self.open(LinkType::Ethernet)?,
        };
        let written = Written {
            consumer: c.packets(),
            backend: b.packets(),
            skipped: self.skipped,
        };
        let [cn, bn] = CAPTURES;
        let c = c.finish().map_err(|e| (cn, e))?;
        let b = b.finish().map_err(|e| (bn, e))?;
        Ok((written, c, b))
    }
}

impl<W: Write + Send> Taps for PcapTaps<W> {
    fn consumer(&mut self, frame: &[u8], meta: &Meta) {
        self.write(true, frame, meta);
    }
    fn backend(&mut self, frame: &[u8], meta: &Meta) {
        self.write(false, frame, meta);
    }
}
