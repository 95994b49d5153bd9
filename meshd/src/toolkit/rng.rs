//! SplitMix64: a small, fast, seeded generator, good enough for session indexes, jitter and
//! path-probe nonces. Not for keys: those come from the operating system through snow.

/// A seeded SplitMix64 stream.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream from `seed`. Give each user its own `salt` so that two generators seeded
    /// alike do not hand out the same numbers.
    pub fn new(seed: u64, salt: u64) -> Self {
        SplitMix64 { state: seed ^ salt }
    }

    /// The next number of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // SplitMix64 from state 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0, 0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
