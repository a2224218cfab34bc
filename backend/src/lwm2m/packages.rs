//! The front serves the images of its campaigns block-wise over CoAP (RFC 7959's Block2):
//! `GET /fw/VERSION`, one block an exchange, so an LwM2M device pulls its package from the
//! server it is registered with (object 5's Package URI `coap://FRONT/fw/VERSION`) rather
//! than over HTTP. A device asks for any block (a cut download resumes at the block holding
//! its next byte) and for smaller blocks than 1,024 bytes if it likes.

use coap_lite::{CoapOption, Packet, ResponseType};

use super::block::{Block, uint};
use super::uplink::Refused;
use crate::ota::firmware::FirmwareStore;

/// The largest block served: 1,024 bytes (the largest RFC 7959 has).
const MAX_SZX: u8 = 6;

/// Where packages are served: the Uri-Path's first segment.
pub const PATH: &str = "fw";

/// The answer to `request`, a GET of image `version`'s block `asked` (the first, 1,024 bytes,
/// when it names none): 2.05 with the block, its Block2 option (whether more follow) and, on
/// the first, the image's size (Size2). An image the store does not hold is 4.04; a block
/// past the image's end is 4.02 (RFC 7959, section 2.4).
pub fn answer(
    firmware: &FirmwareStore,
    request: &Packet,
    version: &str,
    asked: Option<Block>,
) -> Result<Packet, Refused> {
    let Some(image) = firmware.get(version) else {
        return Err(Refused {
            code: ResponseType::NotFound,
            why: format!("no image {version} here"),
        });
    };
    let asked = asked.unwrap_or(Block {
        num: 0,
        more: false,
        szx: MAX_SZX,
    });
    let szx = asked.szx.min(MAX_SZX);
    let size = 1u64 << (szx + 4);
    let start = u64::from(asked.num) * size;
    if start >= image.size && !(start == 0 && image.size == 0) {
        return Err(Refused {
            code: ResponseType::BadOption,
            why: format!("block {} is past the image's {} bytes", asked.num, image.size),
        });
    }
    let end = (start + size).min(image.size);
    // Both within the image's length, which is a usize.
    let (from, to) = (start as usize, end as usize);
    let mut answer = super::answer(request, ResponseType::Content);
    // application/octet-stream.
    answer.add_option(CoapOption::ContentFormat, vec![42]);
    let block = Block {
        num: asked.num,
        more: end < image.size,
        szx,
    };
    answer.add_option(CoapOption::Block2, block.encode());
    if asked.num == 0 {
        answer.add_option(CoapOption::Size2, uint(image.size));
    }
    answer.payload = image.bytes.get(from..to).map(<[u8]>::to_vec).unwrap_or_default();
    Ok(answer)
}
