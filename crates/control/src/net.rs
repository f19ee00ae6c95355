//! IPv4 prefixes (VNet address spaces and subnets) and the addresses Azure reserves in a subnet.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 prefix in CIDR notation, `10.0.0.0/24`. The address is always the network address
/// (host bits zero); parsing refuses anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prefix {
    network: Ipv4Addr,
    len: u8,
}

/// A string that is not a valid IPv4 prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Not `a.b.c.d/len`.
    #[error("`{0}` is not an IPv4 prefix like 10.0.0.0/24")]
    Syntax(String),
    /// Host bits set after the mask.
    #[error("`{0}` has host bits set: the network address is {1}")]
    HostBits(String, Prefix),
}

impl Prefix {
    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The number of addresses in the prefix (2^(32 - len)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// The last address of the prefix (the broadcast address).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.len))
    }

    /// True when `ip` lies in the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.network)
    }

    /// True when every address of `other` lies in `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.network)
    }

    /// True when the two prefixes share an address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// True when Azure reserves `ip` in a subnet with this prefix: the network address, the
    /// next three (default gateway and two for Azure DNS), and the broadcast address. `false`
    /// for addresses outside the prefix.
    pub fn is_reserved(&self, ip: Ipv4Addr) -> bool {
        if !self.contains(ip) {
            return false;
        }
        let offset = u32::from(ip) - u32::from(self.network);
        offset < 4 || ip == self.last()
    }

    /// The addresses of the subnet that are not reserved, lowest first (empty for prefixes
    /// longer than /29, which Azure does not allow as subnets).
    pub fn usable(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        let first = u64::from(u32::from(self.network)) + 4;
        let last = u64::from(u32::from(self.last()));
        (first..last).map(|a| Ipv4Addr::from(a as u32))
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        if len > 32 {
            return Err(syntax());
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask(len));
        if network != addr {
            return Err(PrefixError::HostBits(s.to_owned(), Prefix { network, len }));
        }
        Ok(Prefix { network, len })
    }
}

impl TryFrom<String> for Prefix {
    type Error = PrefixError;
    fn try_from(s: String) -> Result<Prefix, PrefixError> {
        s.parse()
    }
}

impl From<Prefix> for String {
    fn from(p: Prefix) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_and_errors() {
        let p: Prefix = "10.0.0.0/24".parse().unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/24");
        assert_eq!(p.size(), 256);
        assert_eq!(p.last(), Ipv4Addr::new(10, 0, 0, 255));
        assert_eq!(
            "10.0.0.1/24".parse::<Prefix>().unwrap_err().to_string(),
            "`10.0.0.1/24` has host bits set: the network address is 10.0.0.0/24"
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Syntax(_))
        ));
        assert!(matches!(
            "10.0.0.0".parse::<Prefix>(),
            Err(PrefixError::Syntax(_))
        ));
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().size(), 1 << 32);
    }

    #[test]
    fn reserved_addresses_are_first_four_and_last() {
        let p: Prefix = "10.0.1.0/24".parse().unwrap();
        let reserved: Vec<u8> = (0..=255u8)
            .filter(|&i| p.is_reserved(Ipv4Addr::new(10, 0, 1, i)))
            .collect();
        assert_eq!(reserved, vec![0, 1, 2, 3, 255]);
        assert!(!p.is_reserved(Ipv4Addr::new(10, 0, 2, 0)));
        let small: Prefix = "10.0.0.8/29".parse().unwrap();
        let usable: Vec<Ipv4Addr> = small.usable().collect();
        assert_eq!(
            usable,
            vec![
                Ipv4Addr::new(10, 0, 0, 12),
                Ipv4Addr::new(10, 0, 0, 13),
                Ipv4Addr::new(10, 0, 0, 14)
            ]
        );
        assert_eq!("10.0.0.0/30".parse::<Prefix>().unwrap().usable().count(), 0);
    }

    #[test]
    fn covers_and_overlaps() {
        let a: Prefix = "10.0.0.0/16".parse().unwrap();
        let b: Prefix = "10.0.5.0/24".parse().unwrap();
        let c: Prefix = "10.1.0.0/24".parse().unwrap();
        assert!(a.covers(&b) && !b.covers(&a));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }
}
