//! Scratch buffers for the per-message hot path: a payload, a topic, an encoded packet, each
//! needed for a moment and then given back, so a device publishing ten times a second
//! allocates nothing per message and an idle device holds no buffer at all.
//!
//! Design: a small stack of spare buffers per thread (a shard is one thread). Taking one
//! when the stack is empty allocates a fresh one; giving one back keeps it only while the
//! stack is short and the buffer small, so a burst of large packets (an OTA job, a config
//! document) leaves nothing behind. Borrows of the stack never span an `await`: a buffer is
//! taken out whole and owned by its user until given back, and a buffer never given back
//! (its future dropped mid-send) is simply freed.

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::BytesMut;

/// Spare buffers kept per thread: enough for the buffers one publish holds at once (payload,
/// topic, packet) and a few interleaved sends.
const SPARES: usize = 8;
/// A buffer larger than this is freed rather than kept.
const KEEP_LIMIT: usize = 4096;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Read buffers, kept apart: a connection reads into a `BytesMut`, which a `Vec` does not
    /// become without an allocation of its own.
    static SPARE_READS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer the spares keep.
trait Buffer: Default {
    fn capacity(&self) -> usize;
    fn clear(&mut self);
}

impl Buffer for Vec<u8> {
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }

    fn clear(&mut self) {
        Vec::clear(self);
    }
}

impl Buffer for BytesMut {
    fn capacity(&self) -> usize {
        BytesMut::capacity(self)
    }

    fn clear(&mut self) {
        BytesMut::clear(self);
    }
}

/// A spare from `spares`, or a new (empty) buffer when there is none.
fn take<B: Buffer>(spares: &'static LocalKey<RefCell<Vec<B>>>) -> B {
    spares.with(|spare| spare.borrow_mut().pop()).unwrap_or_default()
}

/// Keeps `buffer`, cleared, in `spares` for the next user, while they are short and it is
/// small.
fn give<B: Buffer>(spares: &'static LocalKey<RefCell<Vec<B>>>, mut buffer: B) {
    if buffer.capacity() == 0 || buffer.capacity() > KEEP_LIMIT {
        return;
    }
    buffer.clear();
    spares.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(buffer);
        }
    });
}

/// An empty byte buffer, with room from its last use when there is a spare.
pub fn bytes() -> Vec<u8> {
    take(&SPARE)
}

/// Gives a byte buffer back for the next user.
pub fn give_bytes(buffer: Vec<u8>) {
    give(&SPARE, buffer);
}

/// An empty string, with room from its last use when there is a spare.
pub fn string() -> String {
    // A spare is always empty (given back cleared), and an empty buffer is valid UTF-8.
    String::from_utf8(bytes()).unwrap_or_default()
}

/// Gives a string back for the next user.
pub fn give_string(text: String) {
    give_bytes(text.into_bytes());
}

/// An empty read buffer, with room from its last use when there is a spare: what a
/// connection reads into while something is partly read (a QoS 1 publisher's PUBACK, each
/// message).
pub fn read_buf() -> BytesMut {
    take(&SPARE_READS)
}

/// Gives a read buffer back for the next read.
pub fn give_read_buf(buffer: BytesMut) {
    give(&SPARE_READS, buffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty_with_its_room() {
        let mut first = bytes();
        first.extend_from_slice(&[7; 100]);
        let room = first.as_ptr();
        give_bytes(first);
        let again = bytes();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), room, "the same allocation, reused");
        assert!(again.capacity() >= 100);
        give_bytes(again);
        let text = string();
        assert!(text.is_empty());
        give_string(text);
    }

    #[test]
    fn large_buffers_and_more_than_the_spares_are_freed() {
        let large = vec![0u8; KEEP_LIMIT + 1];
        give_bytes(large);
        assert_eq!(bytes().capacity(), 0, "a large buffer is not kept");
        for _ in 0..SPARES + 4 {
            give_bytes(Vec::with_capacity(16));
        }
        let kept = SPARE.with(|spare| spare.borrow().len());
        assert_eq!(kept, SPARES);
    }
}
