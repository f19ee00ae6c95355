use std::io::{self, Write};

use plsim_wire::LinkType;

/// Writes a classic pcap with nanosecond timestamps (magic `a1b23c4d`), which tshark, Wireshark,
/// tcpdump and tcpreplay all read.
///
/// The format is a 24-byte header and a 16-byte header per record; it is written here rather
/// than through a crate because that is all there is to it.
pub struct Writer<W: Write> {
    out: W,
    snaplen: u32,
    packets: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the file header. `snaplen` is the largest record the file will hold.
    pub fn new(mut out: W, link: LinkType, snaplen: u32) -> io::Result<Writer<W>> {
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay zero.
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&link.linktype().to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer {
            out,
            snaplen,
            packets: 0,
        })
    }

    /// Appends one record; `data` longer than the snap length is cut to it, `wire_len` is the
    /// length on the wire (at least `data.len()`).
    pub fn write(&mut self, ts_ns: u64, data: &[u8], wire_len: usize) -> io::Result<()> {
        let caplen = data.len().min(self.snaplen as usize);
        let wire_len = wire_len.max(data.len());
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(u32::try_from(wire_len).unwrap_or(u32::MAX)).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&data[..caplen])?;
        self.packets += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
