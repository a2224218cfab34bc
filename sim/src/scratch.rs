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

/// An empty byte buffer, with room from its last use when there is a spare.
pub fn bytes() -> Vec<u8> {
    SPARE.with(|spare| spare.borrow_mut().pop()).unwrap_or_default()
}

/// Gives a byte buffer back for the next user.
pub fn give_bytes(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > KEEP_LIMIT {
        return;
    }
    buffer.clear();
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(buffer);
        }
    });
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
    SPARE_READS.with(|spare| spare.borrow_mut().pop()).unwrap_or_default()
}

/// Gives a read buffer back for the next read.
pub fn give_read_buf(mut buffer: BytesMut) {
    if buffer.capacity() == 0 || buffer.capacity() > KEEP_LIMIT {
        return;
    }
    buffer.clear();
    SPARE_READS.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARES {
            spare.push(buffer);
        }
    });
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
