//! The 64-bit mixers every crate of plsim hashes with: one place, fixed constants, no per-process
//! seed, so every run and every machine computes the same values (a replay picks the same
//! backends and the same ports every time).
//!
//! None of them is DoS-resistant, which a simulator fed with its user's own captures does not
//! need. What each one is for:
//!
//! * [`fmix64`] and [`mix2`]: MurmurHash3's finaliser, every input bit affects every output bit.
//!   The load balancer builds its distribution hashes on them (they decide which backend a flow
//!   gets: **their values must never change**, or every replay's backend choices change).
//! * [`fold_mul`] and [`fold2`]: a keyed folded multiply (as in foldhash), the cheapest good
//!   mix of two words. The SNAT stage hashes its flow-table keys with it (only the table's
//!   layout depends on those values).
//! * [`splitmix64`]: SplitMix64's output function of `x` (its state after one step from `x`):
//!   a bijective scrambler for seeds, streams of test keys and payload patterns.
//!
//! ```
//! use plsim_wire::hash::{fmix64, fold2, mix2, splitmix64};
//!
//! assert_eq!(fmix64(0), 0);
//! assert_ne!(mix2(1, 2, 0), mix2(2, 1, 0));
//! assert_ne!(fold2(1, 2), fold2(2, 1));
//! assert_ne!(splitmix64(0), splitmix64(1));
//! ```

/// The 64-bit finaliser of MurmurHash3 (`fmix64`): a bijection in which every input bit affects
/// every output bit. `fmix64(0) == 0`.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Hashes two words under a seed with [`fmix64`]: `fmix64(a ^ fmix64(b ^ seed))`. The second
/// word is mixed before it is combined, so `(a, b)` and `(b, a)` differ.
#[inline]
pub fn mix2(a: u64, b: u64, seed: u64) -> u64 {
    fmix64(a ^ fmix64(b ^ seed))
}

/// The folded multiply: the full 128-bit product of `a` and `b`, its two halves XORed.
#[inline]
pub fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The fixed keys of [`fold2`] (hexadecimal digits of pi).
const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

/// Hashes two words with two [`fold_mul`]s under fixed keys:
/// `fold_mul(fold_mul(a ^ K0, b ^ K1), K2)`. Its high bits are well mixed (a
/// `plsim_flowtab::FlowIndex` takes its buckets from them).
#[inline]
pub fn fold2(a: u64, b: u64) -> u64 {
    fold_mul(fold_mul(a ^ K0, b ^ K1), K2)
}

/// SplitMix64's output for state `x`: `x` advanced by the golden-ratio increment, then
/// scrambled. A bijection of `u64`; `splitmix64(seed + i * 0x9e37_79b9_7f4a_7c15)` for `i = 0..`
/// is SplitMix64's stream.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values: a change here changes every replay's backend choices (`fmix64`, `mix2`),
    /// the SNAT's table layout (`fold2`) or the generated payloads and seeds (`splitmix64`).
    #[test]
    fn values_are_fixed_across_runs() {
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(mix2(0, 0, 0), 0);
        assert_eq!(mix2(1, 0, 0), fmix64(1));
        assert_eq!(mix2(0, 1, 0), fmix64(fmix64(1)));
        assert_eq!(fold_mul(u64::MAX, u64::MAX), (u64::MAX - 1) ^ 1);
        assert_eq!(fold_mul(1 << 63, 4), 2);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(fold2(0, 0), 0x9ba9_bea0_cd04_dfde);
    }

    #[test]
    fn mixers_spread_single_bit_changes() {
        // Flipping any one input bit flips about half the output bits.
        let mixers: [fn(u64) -> u64; 4] = [fmix64, splitmix64, |x| fold2(x, 7), |x| mix2(x, 7, 9)];
        for f in mixers {
            let mut total = 0;
            for bit in 0..64 {
                total += (f(0x1234_5678 ^ (1 << bit)) ^ f(0x1234_5678)).count_ones();
            }
            let mean = f64::from(total) / 64.0;
            assert!((24.0..40.0).contains(&mean), "mean flipped bits {mean}");
        }
    }
}
