use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use plsim_wire::LinkType;

/// The reader's initial buffer (it holds a record of the largest libpcap snap length, 256 KiB, after
/// one doubling); it grows up to [`MAX_RECORD`] for larger records.
const BUFFER: usize = 128 << 10;
/// The largest record accepted: pcapng blocks of up to 16 MiB (a snap length of 256 KiB is the
/// largest libpcap writes; some tools write more).
const MAX_RECORD: usize = 16 << 20;

/// The container format of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap.
    Pcap,
    /// pcapng.
    PcapNg,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        })
    }
}

/// A capture that can't be used at all, naming the file and the reason.
#[derive(Debug)]
pub struct ReadError {
    path: PathBuf,
    reason: String,
}

impl ReadError {
    fn new(path: &Path, reason: impl Into<String>) -> ReadError {
        ReadError {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Why it can't be read.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for ReadError {}

/// One captured frame, borrowed from where it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Capture time in nanoseconds since the Unix epoch, as the capture says (not necessarily
    /// monotonic).
    pub ts_ns: u64,
    /// The link type of the interface it was captured on.
    pub link: LinkType,
    /// The captured bytes.
    pub data: &'a [u8],
    /// The frame's length on the wire (`>= data.len()`; larger when the capture snapped it).
    pub wire_len: usize,
}

impl Frame<'_> {
    /// The frame, copied.
    pub fn to_owned(self) -> FrameBuf {
        FrameBuf {
            ts_ns: self.ts_ns,
            link: self.link,
            data: self.data.to_vec(),
            wire_len: self.wire_len,
        }
    }
}

/// One frame, owned: a capture made in memory (a generator's, a test's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameBuf {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The link type.
    pub link: LinkType,
    /// The captured bytes.
    pub data: Vec<u8>,
    /// The frame's length on the wire (`>= data.len()`).
    pub wire_len: usize,
}

impl FrameBuf {
    /// A whole frame (not snapped: `wire_len` is its length) at `ts_ns`.
    pub fn new(ts_ns: u64, link: LinkType, data: Vec<u8>) -> FrameBuf {
        let wire_len = data.len();
        FrameBuf {
            ts_ns,
            link,
            data,
            wire_len,
        }
    }

    /// The frame, borrowed.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame {
            ts_ns: self.ts_ns,
            link: self.link,
            data: &self.data,
            wire_len: self.wire_len,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset_s: i64,
    snaplen: u32,
}

/// The file name that stands for standard input.
pub const STDIN: &str = "-";

/// Reads a capture, one packet at a time, in constant memory.
pub struct Reader {
    path: PathBuf,
    inner: Box<dyn PcapReaderIterator + Send>,
    format: Format,
    /// Classic pcap: the file's link type and whether timestamps are in nanoseconds.
    legacy: Option<(LinkType, bool)>,
    /// pcapng: the interfaces of the current section.
    interfaces: Vec<Interface>,
    pending_consume: usize,
    /// The parser's buffer size.
    capacity: usize,
    buf: Vec<u8>,
    last_ts: u64,
    truncated: bool,
    /// What the damage was, once met.
    damage: Option<String>,
    warning: Option<String>,
    done: bool,
    /// The first packet, read ahead when the capture was opened (its bytes are in `buf`).
    peeked: Option<(u64, LinkType, usize)>,
}

impl Reader {
    /// Opens a capture file; `-` is standard input (`tcpdump -w - | plsim replay -`), named
    /// "standard input" in errors. Fails, naming the file, if it is missing, unreadable, empty,
    /// or not a pcap or pcapng capture.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, ReadError> {
        Reader::open_through(path, |input| input)
    }

    /// Opens a capture as [`open`](Reader::open) does, reading its bytes through `through`
    /// (which may hash them, say, and must pass them on unchanged).
    pub fn open_through<R: Read + Send + 'static>(
        path: impl AsRef<Path>,
        through: impl FnOnce(Box<dyn Read + Send>) -> R,
    ) -> Result<Reader, ReadError> {
        let path = path.as_ref();
        if path == Path::new(STDIN) {
            return Reader::from_read("standard input", through(Box::new(io::stdin())));
        }
        let file = File::open(path).map_err(|e| ReadError::new(path, io_reason(&e)))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(ReadError::new(path, "is a directory, not a capture"));
        }
        Reader::from_read(path, through(Box::new(file)))
    }

    /// Reads a capture from any byte stream; `name` is used in errors and warnings.
    pub fn from_read(
        name: impl AsRef<Path>,
        input: impl Read + Send + 'static,
    ) -> Result<Reader, ReadError> {
        let path = name.as_ref();
        // Look at the magic first, to say precisely what is wrong with a file that isn't one.
        let mut input = BufReader::with_capacity(BUFFER, input);
        let head = loop {
            match input.fill_buf() {
                Ok(h) => break h,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::new(path, io_reason(&e))),
            }
        };
        let got = head.len().min(4);
        if got == 0 {
            return Err(ReadError::new(path, "empty file, not a capture"));
        }
        let format = match head[..got] {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d] => Format::Pcap,
            [0x0a, 0x0d, 0x0d, 0x0a] => Format::PcapNg,
            _ if got < 4 => {
                return Err(ReadError::new(
                    path,
                    format!("only {got} bytes long, not a capture"),
                ));
            }
            _ => {
                return Err(ReadError::new(
                    path,
                    format!(
                        "not a pcap or pcapng capture (starts with {:02x}{:02x}{:02x}{:02x})",
                        head[0], head[1], head[2], head[3]
                    ),
                ));
            }
        };
        let inner = match create_reader(BUFFER, input) {
            Ok(r) => r,
            Err(PcapError::Incomplete(_)) | Err(PcapError::UnexpectedEof) | Err(PcapError::Eof) => {
                return Err(ReadError::new(path, format!("{format} header cut short")));
            }
            Err(e) => {
                return Err(ReadError::new(
                    path,
                    format!("damaged {format} header: {}", describe(&e)),
                ));
            }
        };
        let mut reader = Reader {
            path: path.to_path_buf(),
            inner,
            format,
            legacy: None,
            interfaces: Vec::new(),
            pending_consume: 0,
            capacity: BUFFER,
            buf: Vec::with_capacity(65536),
            last_ts: 0,
            truncated: false,
            damage: None,
            warning: None,
            done: false,
            peeked: None,
        };
        // The first block must parse: a file whose header is damaged is not a capture.
        reader.read_header()?;
        // So must everything up to the first packet: a capture damaged before it holds nothing
        // to replay, and is not one either (a capture cut short after it is read up to there).
        reader.peeked = reader.advance();
        if let (None, Some(why)) = (reader.peeked, &reader.damage) {
            return Err(ReadError::new(
                path,
                format!("damaged before its first packet: {why}"),
            ));
        }
        Ok(reader)
    }

    fn read_header(&mut self) -> Result<(), ReadError> {
        loop {
            match self.inner.next() {
                Ok((offset, block)) => {
                    let header = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            self.legacy = Some((
                                LinkType::from_linktype(h.network.0 as u32),
                                h.is_nanosecond_precision(),
                            ));
                            true
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => true,
                        _ => false,
                    };
                    if !header {
                        return Err(ReadError::new(
                            &self.path,
                            "does not start with a capture header",
                        ));
                    }
                    self.inner.consume(offset);
                    return Ok(());
                }
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.refill().is_err() {
                        return Err(ReadError::new(&self.path, "read error"));
                    }
                }
                Err(e) => {
                    let what = describe(&e);
                    return Err(ReadError::new(
                        &self.path,
                        format!("damaged {} header: {what}", self.format),
                    ));
                }
            }
        }
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The file (or name) being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the reader met a record cut short, or damage after the header: every complete
    /// record before it was yielded, nothing after it.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// What was wrong with the capture after its header, if anything.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    fn stop(&mut self, why: String) {
        self.truncated = true;
        self.warning = Some(format!("{}: {why}; read up to there", self.path.display()));
        self.damage = Some(why);
        self.done = true;
    }

    /// The next packet, or `None` at the end of the capture (also after damage: see
    /// [`Reader::truncated`]).
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let (ts_ns, link, wire_len) = match self.peeked.take() {
            Some(p) => p,
            None => self.advance()?,
        };
        Some(Frame {
            ts_ns,
            link,
            data: &self.buf,
            wire_len,
        })
    }

    /// Reads up to the next packet, leaves its bytes in `buf` and returns its timestamp, link
    /// type and length on the wire.
    fn advance(&mut self) -> Option<(u64, LinkType, usize)> {
        if self.done {
            return None;
        }
        self.inner.consume(self.pending_consume);
        self.pending_consume = 0;
        loop {
            let consumed_before = self.inner.consumed();
            let (offset, found) = match self.inner.next() {
                Ok((offset, block)) => {
                    let found = match block {
                        PcapBlockOwned::Legacy(b) => {
                            let Some((link, nanos)) = self.legacy else {
                                return self.fail("packet record before the pcap header");
                            };
                            let frac = u64::from(b.ts_usec);
                            let sub_ns = if nanos { frac } else { frac * 1000 };
                            let ts_ns = u64::from(b.ts_sec) * 1_000_000_000 + sub_ns;
                            self.buf.clear();
                            let caplen = (b.caplen as usize).min(b.data.len());
                            self.buf.extend_from_slice(&b.data[..caplen]);
                            Some((ts_ns, link, (b.origlen as usize).max(caplen)))
                        }
                        PcapBlockOwned::LegacyHeader(h) => {
                            self.legacy = Some((
                                LinkType::from_linktype(h.network.0 as u32),
                                h.is_nanosecond_precision(),
                            ));
                            None
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            // A new section: its interfaces start afresh.
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let Some(resolution) = ts_resolution(idb.if_tsresol) else {
                                return self.fail(&format!(
                                    "interface {} has an invalid timestamp resolution",
                                    self.interfaces.len()
                                ));
                            };
                            self.interfaces.push(Interface {
                                link: LinkType::from_linktype(u32::from(idb.linktype.0 as u16)),
                                resolution,
                                offset_s: idb.if_tsoffset,
                                snaplen: idb.snaplen,
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let if_id = epb.if_id;
                            let Some(&ifc) = self.interfaces.get(if_id as usize) else {
                                return self.fail(&format!(
                                    "packet on interface {if_id} which was never described"
                                ));
                            };
                            let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ns = u128::from(ts) * 1_000_000_000 / u128::from(ifc.resolution);
                            let ns = ns as i128 + i128::from(ifc.offset_s) * 1_000_000_000;
                            let ts_ns = ns.clamp(0, i128::from(u64::MAX)) as u64;
                            let caplen = (epb.caplen as usize).min(epb.data.len());
                            self.buf.clear();
                            self.buf.extend_from_slice(&epb.data[..caplen]);
                            Some((ts_ns, ifc.link, (epb.origlen as usize).max(caplen)))
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let Some(&ifc) = self.interfaces.first() else {
                                return self
                                    .fail("simple packet block before any interface description");
                            };
                            let mut caplen = (spb.origlen as usize).min(spb.data.len());
                            if ifc.snaplen > 0 {
                                caplen = caplen.min(ifc.snaplen as usize);
                            }
                            self.buf.clear();
                            self.buf.extend_from_slice(&spb.data[..caplen]);
                            // A simple packet block has no timestamp: it keeps the last one seen.
                            Some((self.last_ts, ifc.link, (spb.origlen as usize).max(caplen)))
                        }
                        // Name resolution, statistics, secrets, custom and unknown blocks.
                        PcapBlockOwned::NG(_) => None,
                    };
                    (offset, found)
                }
                Err(PcapError::Eof) => {
                    self.done = true;
                    return None;
                }
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.refill().is_err() {
                        return self.fail("read error");
                    }
                    continue;
                }
                Err(PcapError::BufferTooSmall) => {
                    let want = self.capacity * 2;
                    if want > MAX_RECORD || !self.inner.grow(want) {
                        return self.fail(&format!(
                            "a record at byte {consumed_before} claims more than {} MiB",
                            MAX_RECORD >> 20
                        ));
                    }
                    self.capacity = want;
                    continue;
                }
                Err(PcapError::UnexpectedEof) => {
                    let left = self.inner.data().len();
                    return self.fail(&format!("the last record is cut short ({left} bytes of it at byte {consumed_before})"));
                }
                Err(e) => {
                    let what = describe(&e);
                    return self.fail(&format!("damaged record at byte {consumed_before}: {what}"));
                }
            };
            match found {
                Some((ts_ns, link, wire_len)) => {
                    self.pending_consume = offset;
                    self.last_ts = ts_ns;
                    return Some((ts_ns, link, wire_len));
                }
                None => self.inner.consume(offset),
            }
        }
    }

    fn fail<T>(&mut self, why: &str) -> Option<T> {
        self.stop(why.to_string());
        None
    }
}

/// Timestamp units per second of an `if_tsresol` option: 10^-n, or 2^-n when the top bit is set.
/// (pcap-parser's own version rejects every power of two: it compares the byte with the flag.)
fn ts_resolution(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n)
    }
}

fn describe<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "record too large".into(),
        PcapError::UnexpectedEof | PcapError::Incomplete(_) => "cut short".into(),
        PcapError::ReadError => "read error".into(),
        PcapError::HeaderNotRecognized => "header not recognized".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("invalid block structure ({})", kind.description())
        }
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
