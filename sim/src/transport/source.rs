//! Source-address spreading: each connection binds a local address picked from a block, so
//! the 28k ephemeral ports of one (source, destination) pair stop being the ceiling. Device
//! `i` always gets the same address, whatever the shard, so a run is repeatable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::scenario::AddrBlock;

/// The block loopback targets spread over when a scenario names none: all of 127.0.0.0/8
/// binds with no setup on Linux.
pub const LOOPBACK_BLOCK: AddrBlock = AddrBlock {
    base: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
    prefix_len: 8,
};

/// Picks local source addresses from a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddrs {
    block: AddrBlock,
}

impl SourceAddrs {
    /// Addresses of `block`.
    pub fn new(block: AddrBlock) -> Self {
        Self { block }
    }

    /// The spreading a run uses towards `target`: the scenario's block, else all of
    /// 127.0.0.0/8 for a loopback target, else none (the system picks).
    pub fn for_target(block: Option<AddrBlock>, target: IpAddr) -> Option<Self> {
        match block {
            Some(block) => Some(Self::new(block)),
            None if target.is_loopback() && target.is_ipv4() => Some(Self::new(LOOPBACK_BLOCK)),
            None => None,
        }
    }

    /// How many host addresses the block holds (network and broadcast addresses excluded for
    /// IPv4 blocks larger than /31).
    pub fn len(&self) -> u128 {
        let bits = match self.block.base {
            IpAddr::V4(_) => 32 - u32::from(self.block.prefix_len.min(32)),
            IpAddr::V6(_) => 128 - u32::from(self.block.prefix_len.min(128)),
        };
        let size = 1u128.checked_shl(bits).unwrap_or(u128::MAX);
        if self.block.base.is_ipv4() && bits >= 2 {
            size - 2
        } else {
            size
        }
    }

    /// Whether the block holds no address (never, for a valid block).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The source address of device `index`: the block's host addresses in turn.
    pub fn for_device(&self, index: u64) -> IpAddr {
        let offset = u128::from(index) % self.len().max(1);
        match self.block.base {
            IpAddr::V4(base) => {
                let skip_network = u32::from(self.len() > 2 || self.block.prefix_len < 31);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.block.prefix_len.min(32)))
                    .unwrap_or(0);
                let network = u32::from(base) & mask;
                // offset < len <= 2^32, so it fits.
                let host = network.wrapping_add(skip_network).wrapping_add(offset as u32);
                IpAddr::V4(Ipv4Addr::from(host))
            }
            IpAddr::V6(base) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.block.prefix_len.min(128)))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from((u128::from(base) & mask).wrapping_add(offset)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> SourceAddrs {
        SourceAddrs::new(AddrBlock::parse(text).expect("valid block"))
    }

    #[test]
    fn devices_cycle_through_host_addresses() {
        let addrs = block("127.0.0.0/24");
        assert_eq!(addrs.len(), 254);
        assert_eq!(addrs.for_device(0), "127.0.0.1".parse::<IpAddr>().expect("ip"));
        assert_eq!(addrs.for_device(253), "127.0.0.254".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            addrs.for_device(254),
            "127.0.0.1".parse::<IpAddr>().expect("ip"),
            "wraps"
        );
        let loopback = SourceAddrs::new(LOOPBACK_BLOCK);
        assert_eq!(loopback.len(), (1 << 24) - 2);
        assert_eq!(
            loopback.for_device(70_000),
            "127.1.17.113".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn tiny_blocks_use_every_address() {
        assert_eq!(
            block("10.1.2.3/32").for_device(5),
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
        let pair = block("10.1.2.2/31");
        assert_eq!(
            (pair.for_device(0), pair.for_device(1)),
            ("10.1.2.2".parse().expect("ip"), "10.1.2.3".parse().expect("ip"))
        );
    }

    #[test]
    fn loopback_targets_spread_by_default() {
        let target: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            SourceAddrs::for_target(None, target),
            Some(SourceAddrs::new(LOOPBACK_BLOCK))
        );
        assert_eq!(SourceAddrs::for_target(None, "10.0.0.5".parse().expect("ip")), None);
    }
}
