//! A device's random stream read one ChaCha8 block at a time.
//!
//! Design: a device keeps its streams' positions, not their generators (a generator holds
//! 300-odd bytes, a position 8), so every event that draws keys its stream again at the
//! position and draws two or three words. [`ChaCha8Rng`](super::ChaCha8Rng) computes four
//! blocks (64 words) at its first draw; [`BlockStream`] computes only the block the next word
//! is in, a quarter of the work for a report (docs/scale.md, "Counting instructions"). It
//! gives exactly the words [`device_rng`](super::device_rng) gives at the same position
//! (tested against it), so devices behave as they did: the same key, the ChaCha stream
//! (nonce) as the purpose, a 64-bit block counter, eight rounds.

use std::convert::Infallible;

use rand_chacha::rand_core::TryRng;

use super::{StreamId, device_key};

/// The words in a ChaCha block.
const BLOCK_WORDS: u64 = 16;

/// ChaCha's constant row, "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// Device `index`'s stream for `stream` in a run seeded with `seed`, read from a word
/// position on, one block at a time.
#[derive(Debug, Clone)]
pub struct BlockStream {
    /// The device's key ([`device_key`]) as little-endian words.
    key: [u32; 8],
    stream: u64,
    /// The position of the next word, in words from the stream's start.
    pos: u64,
    /// The block `pos` is in, once computed.
    block: Option<[u32; 16]>,
}

impl BlockStream {
    /// The stream at word `pos`: what [`device_rng`](super::device_rng) for the same seed,
    /// index and stream gives after `set_word_pos(pos)`.
    pub fn new(seed: u64, index: u64, stream: StreamId, pos: u64) -> Self {
        let mut key = [0u32; 8];
        for (word, chunk) in key.iter_mut().zip(device_key(seed, index).chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Self {
            key,
            stream: stream.0,
            pos,
            block: None,
        }
    }

    /// The position of the next word, in words from the stream's start.
    pub fn word_pos(&self) -> u64 {
        self.pos
    }

    /// The next word.
    fn word(&mut self) -> u32 {
        let (key, stream, pos) = (&self.key, self.stream, self.pos);
        let block = self
            .block
            .get_or_insert_with(|| chacha8_block(key, pos / BLOCK_WORDS, stream));
        // Below 16.
        let word = block[(pos % BLOCK_WORDS) as usize];
        self.pos = pos.wrapping_add(1);
        if self.pos.is_multiple_of(BLOCK_WORDS) {
            self.block = None;
        }
        word
    }
}

impl TryRng for BlockStream {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.word())
    }

    /// Two words, the first the low half (as rand_chacha reads them).
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let low = self.word();
        let high = self.word();
        Ok(u64::from(high) << 32 | u64::from(low))
    }

    /// Whole words, little-endian; a last part-word uses its first bytes and takes the word.
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(4) {
            let word = self.word().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

/// ChaCha with eight rounds: block `counter` of stream `stream` under `key`.
fn chacha8_block(key: &[u32; 8], counter: u64, stream: u64) -> [u32; 16] {
    let input = [
        SIGMA[0],
        SIGMA[1],
        SIGMA[2],
        SIGMA[3],
        key[0],
        key[1],
        key[2],
        key[3],
        key[4],
        key[5],
        key[6],
        key[7],
        counter as u32,
        (counter >> 32) as u32,
        stream as u32,
        (stream >> 32) as u32,
    ];
    let mut x = input;
    for _ in 0..4 {
        quarter_round(&mut x, 0, 4, 8, 12);
        quarter_round(&mut x, 1, 5, 9, 13);
        quarter_round(&mut x, 2, 6, 10, 14);
        quarter_round(&mut x, 3, 7, 11, 15);
        quarter_round(&mut x, 0, 5, 10, 15);
        quarter_round(&mut x, 1, 6, 11, 12);
        quarter_round(&mut x, 2, 7, 8, 13);
        quarter_round(&mut x, 3, 4, 9, 14);
    }
    for (word, start) in x.iter_mut().zip(input) {
        *word = word.wrapping_add(start);
    }
    x
}

/// ChaCha's quarter round on words `a`, `b`, `c` and `d` of `x` (each below 16).
#[inline(always)]
fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Rng, device_rng};

    /// Draws of every kind, in an order from `choice`, from both generators at once.
    fn same_draws(seed: u64, index: u64, stream: StreamId, pos: u64, choice: &mut impl Rng) {
        let mut theirs = device_rng(seed, index, stream);
        theirs.set_word_pos(u128::from(pos));
        let mut ours = BlockStream::new(seed, index, stream, pos);
        for _ in 0..40 {
            match choice.next_u32() % 3 {
                0 => assert_eq!(ours.next_u32(), theirs.next_u32()),
                1 => assert_eq!(ours.next_u64(), theirs.next_u64()),
                _ => {
                    let len = (choice.next_u32() % 13) as usize;
                    let (mut a, mut b) = ([0u8; 12], [0u8; 12]);
                    ours.fill_bytes(&mut a[..len]);
                    theirs.fill_bytes(&mut b[..len]);
                    assert_eq!(a, b);
                }
            }
            assert_eq!(
                u128::from(ours.word_pos()),
                theirs.get_word_pos(),
                "{seed} {index} {stream:?} {pos}"
            );
        }
    }

    #[test]
    fn the_words_are_rand_chachas_at_every_position() {
        let mut choice = device_rng(1, 2, StreamId(3));
        // Positions at and around block and four-block boundaries, and far into a stream.
        for pos in [
            0,
            1,
            14,
            15,
            16,
            17,
            31,
            32,
            47,
            48,
            63,
            64,
            65,
            1_000_003,
            u64::from(u32::MAX) * 16 + 15,
        ] {
            for stream in [StreamId::TELEMETRY, StreamId::LINK, StreamId::OTA, StreamId::phase(7)] {
                same_draws(42, 7, stream, pos, &mut choice);
            }
        }
        for _ in 0..500 {
            let (seed, index) = (choice.next_u64(), choice.next_u64() % 10_000_000);
            let stream = StreamId(choice.next_u64() % 1100);
            let pos = choice.next_u64() % 100_000;
            same_draws(seed, index, stream, pos, &mut choice);
        }
    }

    #[test]
    fn a_block_is_computed_once_for_its_words() {
        let mut stream = BlockStream::new(9, 1, StreamId::TELEMETRY, 14);
        assert!(stream.block.is_none(), "nothing computed before a draw");
        stream.next_u32();
        assert!(stream.block.is_some());
        stream.next_u32();
        assert!(stream.block.is_none(), "the block is used up at its 16th word");
        assert_eq!(stream.word_pos(), 16);
    }
}
