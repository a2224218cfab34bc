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

pub use fleetsim_backend::lwm2m::block::{Block, MAX_NUM};

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
