//! The payload every client sends: a seeded pseudo-random pattern, so a backend's echo can be
//! verified byte by byte without keeping what was sent.

use plsim_wire::hash::splitmix64;

/// Byte `offset` of the payload connection `conn` sends in a run seeded with `seed`.
pub fn pattern_byte(seed: u64, conn: u32, offset: u64) -> u8 {
    let w = pattern_word(seed, conn, offset / 8);
    w.to_le_bytes()[(offset % 8) as usize]
}

fn pattern_word(seed: u64, conn: u32, word: u64) -> u64 {
    splitmix64(seed ^ splitmix64(u64::from(conn) ^ 0x5eed_0000_0000) ^ word.rotate_left(17))
}

/// Writes the pattern of connection `conn` from `offset` into `out`.
pub(crate) fn fill_pattern(seed: u64, conn: u32, mut offset: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let bytes = pattern_word(seed, conn, offset / 8).to_le_bytes();
        let from = (offset % 8) as usize;
        let n = (8 - from).min(out.len() - i);
        out[i..i + n].copy_from_slice(&bytes[from..from + n]);
        i += n;
        offset += n as u64;
    }
}

/// Counts the bytes of `data` equal to the pattern of `conn` from `offset`.
pub(crate) fn count_matching(seed: u64, conn: u32, mut offset: u64, data: &[u8]) -> u64 {
    let mut ok = 0;
    let mut i = 0;
    while i < data.len() {
        let bytes = pattern_word(seed, conn, offset / 8).to_le_bytes();
        let from = (offset % 8) as usize;
        let n = (8 - from).min(data.len() - i);
        ok += data[i..i + n]
            .iter()
            .zip(&bytes[from..from + n])
            .filter(|(a, b)| a == b)
            .count() as u64;
        i += n;
        offset += n as u64;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_fill_and_count_agree_with_the_byte_function() {
        let mut buf = vec![0u8; 37];
        fill_pattern(3, 9, 5, &mut buf);
        for (i, &b) in buf.iter().enumerate() {
            assert_eq!(b, pattern_byte(3, 9, 5 + i as u64));
        }
        assert_eq!(count_matching(3, 9, 5, &buf), 37);
        buf[10] ^= 1;
        assert_eq!(count_matching(3, 9, 5, &buf), 36);
        // Another connection or seed gives another stream.
        assert_ne!(count_matching(3, 10, 5, &buf), 36);
        assert_ne!(count_matching(4, 9, 5, &buf), 36);
    }
}
