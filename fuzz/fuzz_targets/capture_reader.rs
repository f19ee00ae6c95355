//! Any bytes given to the capture reader: an error or packets, never a panic, and every packet
//! yielded is classified without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plsim_pcap::Reader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = Reader::from_read("fuzz", std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let mut n = 0usize;
    while let Some(p) = reader.next_frame() {
        assert!(p.data.len() <= p.wire_len);
        let _ = plsim_wire::classify(p.link, p.data, p.wire_len);
        n += 1;
        assert!(n <= data.len(), "more packets than input bytes");
    }
    if reader.truncated() {
        assert!(reader.warning().is_some());
    }
});
