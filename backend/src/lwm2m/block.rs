//! The Block1 and Block2 options of block-wise transfers over CoAP (RFC 7959, section 2.2):
//! what the front writes when it pushes a package and reads when it serves one, and what
//! fleetsim's devices write and read (one codec on both sides).

/// The largest block number (RFC 7959, section 2.2: 20 bits).
pub const MAX_NUM: u32 = (1 << 20) - 1;

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
        uint(u64::from(
            (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx),
        ))
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

/// `value` as an option's uint: the shortest big-endian integer (none for 0).
pub fn uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
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
