//! SplitMix64: the one small deterministic generator every part of skyhop
//! uses where it needs well-mixed bits without a real RNG (seed derivation
//! in the simulator, the runtime's and demo's seeds, test jitter and test
//! pair choice). It lives here, in the lowest crate, so that every crate
//! and test shares one copy.

/// The golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// One step of SplitMix64: a well-mixed 64-bit value from `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A SplitMix64 stream: the state advances by the golden increment and each
/// output is [`splitmix64`] of the previous state.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GOLDEN);
        out
    }

    /// A value in `0..n` (`n > 0`; 0 is taken as 1); the tiny modulo bias
    /// does not matter where this is used.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// 32 pseudo-random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_splitmix64_of_successive_states() {
        let mut s = SplitMix64(7);
        assert_eq!(s.next_u64(), splitmix64(7));
        assert_eq!(s.next_u64(), splitmix64(7u64.wrapping_add(GOLDEN)));
        // The published first output of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        assert!(SplitMix64(3).below(10) < 10);
    }
}
