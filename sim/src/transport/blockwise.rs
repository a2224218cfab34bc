//! Block-wise transfers over CoAP (RFC 7959): a resource larger than a datagram fetched with
//! Block2, one confirmable GET a block, from any byte on (a download cut short resumes at the
//! block that holds its next byte).

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};

use super::coap::{ExchangeError, exchange};
use super::datagram::Datagram;
use crate::metrics::recorder::Meter;

/// The size exponent a device asks for: 2^(6 + 4), 1,024-byte blocks, the largest RFC 7959
/// has and the most a block's datagram can hold below a typical path MTU.
pub const SZX: u8 = 6;

/// The largest block number (RFC 7959, section 2.2: 20 bits).
const MAX_NUM: u32 = (1 << 20) - 1;

/// A Block1 or Block2 option's value: block `num` of `2^(szx + 4)` bytes, and whether more
/// follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The block's number, counted in blocks of this size.
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// The size exponent: 0 (16 bytes) to 6 (1,024); 7 is reserved.
    pub szx: u8,
}

impl Block {
    /// The block's size in bytes.
    pub fn size(self) -> u64 {
        1 << (self.szx + 4)
    }

    /// The option's value: the shortest big-endian integer (none for 0).
    pub fn encode(self) -> Vec<u8> {
        let value = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx);
        let bytes = value.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        bytes[first..].to_vec()
    }

    /// The value `bytes` hold; `None` for more than three bytes or the reserved size.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > 3 {
            return None;
        }
        let value = bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b));
        let szx = (value & 7) as u8;
        (szx != 7).then_some(Self {
            num: value >> 4,
            more: value & 8 != 0,
            szx,
        })
    }
}

/// Why a block-wise transfer stopped short of what it asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockwiseError {
    /// A block's exchange failed.
    Exchange(ExchangeError),
    /// The server answered a block with another code than 2.05 Content (it has no such
    /// resource: 4.04).
    Refused(MessageClass),
    /// The answer was not the block asked for (another number, a larger size, a block that
    /// does not cover the byte asked for, a malformed option), or the resource ended before
    /// the bytes asked for.
    Malformed,
}

/// Fetches bytes `from..to` of the resource at `path` by block-wise GET, each block a
/// confirmable exchange of its own whose message id `ids` gives (the token is made from it),
/// handing the bytes in `from..to` to `sink` in order. A server that answers with smaller
/// blocks is asked in its size from then on (RFC 7959, section 2.4); one that sends the whole
/// resource at once (no Block2) is read from `from`. Returns how many bytes `sink` took, and
/// why the transfer stopped short, if it did.
pub async fn get_blocks(
    endpoint: &Datagram,
    path: &[&str],
    (from, to): (u64, u64),
    (ids, jitter): (&mut dyn FnMut() -> u16, f64),
    meter: &Meter,
    sink: &mut dyn FnMut(&[u8]),
) -> (u64, Result<(), BlockwiseError>) {
    let mut at = from;
    let mut szx = SZX;
    while at < to {
        let asked = Block {
            num: match u32::try_from(at / (1u64 << (szx + 4))) {
                Ok(num) if num <= MAX_NUM => num,
                _ => return (at - from, Err(BlockwiseError::Malformed)),
            },
            more: false,
            szx,
        };
        let mut request = Packet::new();
        request.header.set_type(MessageType::Confirmable);
        request.header.code = MessageClass::Request(RequestType::Get);
        request.header.message_id = ids();
        request.set_token(request.header.message_id.to_be_bytes().to_vec());
        for segment in path {
            request.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        request.add_option(CoapOption::Block2, asked.encode());
        let answer = match exchange(endpoint, &request, jitter, meter, |_| {}).await {
            Ok(answer) => answer,
            Err(error) => return (at - from, Err(BlockwiseError::Exchange(error))),
        };
        if answer.header.code != MessageClass::Response(ResponseType::Content) {
            return (at - from, Err(BlockwiseError::Refused(answer.header.code)));
        }
        let (offset, last) = match answer.get_first_option(CoapOption::Block2) {
            // The whole resource in one answer.
            None => (0, true),
            Some(value) => match Block::decode(value) {
                Some(got) if got.szx <= asked.szx && got.size() * u64::from(got.num) <= at => {
                    szx = got.szx;
                    (got.size() * u64::from(got.num), !got.more)
                }
                _ => return (at - from, Err(BlockwiseError::Malformed)),
            },
        };
        let payload = &answer.payload;
        let skip = usize::try_from(at - offset).unwrap_or(usize::MAX);
        let Some(fresh) = payload.get(skip..).filter(|fresh| !fresh.is_empty()) else {
            // Nothing at or after the byte asked for: the resource is shorter than that.
            return (at - from, Err(BlockwiseError::Malformed));
        };
        let wanted = fresh.len().min(usize::try_from(to - at).unwrap_or(usize::MAX));
        sink(&fresh[..wanted]);
        at += wanted as u64;
        if last && at < to {
            return (at - from, Err(BlockwiseError::Malformed));
        }
    }
    (at - from, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_options_encode_shortest_and_decode_back() {
        let cases = [
            (
                Block {
                    num: 0,
                    more: false,
                    szx: 0,
                },
                vec![],
            ),
            (
                Block {
                    num: 0,
                    more: true,
                    szx: 6,
                },
                vec![0x0e],
            ),
            (
                Block {
                    num: 1,
                    more: false,
                    szx: 6,
                },
                vec![0x16],
            ),
            (
                Block {
                    num: 50,
                    more: true,
                    szx: 6,
                },
                vec![0x03, 0x2e],
            ),
            (
                Block {
                    num: MAX_NUM,
                    more: true,
                    szx: 6,
                },
                vec![0xff, 0xff, 0xfe],
            ),
        ];
        for (block, bytes) in cases {
            assert_eq!(block.encode(), bytes, "{block:?}");
            assert_eq!(Block::decode(&bytes), Some(block), "{bytes:?}");
        }
        assert_eq!(
            Block {
                num: 3,
                more: false,
                szx: 6
            }
            .size(),
            1024
        );
        assert_eq!(Block::decode(&[0x07]), None, "the reserved size");
        assert_eq!(Block::decode(&[1, 2, 3, 4]), None, "more than three bytes");
    }
}
