//! A small xorshift generator for the seeded-mutation tests (`no_panic_*.rs`): they need
//! reproducible bytes, not statistics. Included by path, apart from the backend harness.

/// A xorshift64 generator; its state must not be 0.
pub struct Bytes64(pub u64);

impl Bytes64 {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to four edits of `bytes`: a byte changed, inserted or removed, or the rest cut.
    #[allow(dead_code, reason = "the CSR test mutates its own way")]
    pub fn mutate(&mut self, bytes: &mut Vec<u8>) {
        for _ in 0..=self.below(4) {
            let at = self.below(bytes.len() + 1);
            match self.below(4) {
                0 if at < bytes.len() => bytes[at] = self.next() as u8,
                1 => bytes.insert(at, self.next() as u8),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
    }
}
