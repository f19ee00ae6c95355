use std::fmt;

/// The link layer of a capture's frames (its pcap LINKTYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1): Ethernet II, with up to two 802.1Q/802.1ad tags.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2,
    /// LINKTYPE_RAW (101, and 12/14 on some systems): a bare IPv4 or IPv6 packet.
    RawIp,
    /// LINKTYPE_IPV4 (228): a bare IPv4 packet.
    RawIpv4,
    /// LINKTYPE_IPV6 (229): a bare IPv6 packet.
    RawIpv6,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): BSD loopback, a 4-byte address family.
    Loopback {
        /// The address family is big-endian (LINKTYPE_LOOP), not host order (LINKTYPE_NULL
        /// from a little-endian host).
        big_endian: bool,
    },
    /// Any other link type: nothing in it is read as IP (every frame is `non_ip`).
    Other(u32),
}

impl LinkType {
    /// The link type of a pcap/pcapng LINKTYPE number.
    pub fn from_linktype(n: u32) -> LinkType {
        match n {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::RawIpv4,
            229 => LinkType::RawIpv6,
            0 => LinkType::Loopback { big_endian: false },
            108 => LinkType::Loopback { big_endian: true },
            n => LinkType::Other(n),
        }
    }

    /// The LINKTYPE number to write in a pcap header.
    pub fn linktype(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::RawIp => 101,
            LinkType::RawIpv4 => 228,
            LinkType::RawIpv6 => 229,
            LinkType::Loopback { big_endian: false } => 0,
            LinkType::Loopback { big_endian: true } => 108,
            LinkType::Other(n) => n,
        }
    }

    /// A short name for reports (`"ethernet"`, `"linux_sll"`, ...).
    pub fn name(self) -> String {
        match self {
            LinkType::Ethernet => "ethernet".into(),
            LinkType::LinuxSll => "linux_sll".into(),
            LinkType::LinuxSll2 => "linux_sll2".into(),
            LinkType::RawIp => "raw".into(),
            LinkType::RawIpv4 => "ipv4".into(),
            LinkType::RawIpv6 => "ipv6".into(),
            LinkType::Loopback { big_endian: false } => "null".into(),
            LinkType::Loopback { big_endian: true } => "loop".into(),
            LinkType::Other(n) => format!("linktype_{n}"),
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What the link header says the next layer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L3 {
    /// EtherType 0x0800 (or an IPv4-only link type): an IPv4 header is expected.
    Ipv4,
    /// EtherType 0x86DD (or an IPv6-only link type).
    Ipv6,
    /// A link type that carries either; the version nibble decides.
    AnyIp,
    /// Not IP.
    Other,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn from_ethertype(t: u16) -> L3 {
    match t {
        ETHERTYPE_IPV4 => L3::Ipv4,
        ETHERTYPE_IPV6 => L3::Ipv6,
        _ => L3::Other,
    }
}

/// Reads the link header: the offset of the layer-3 header and what it should be, or `None` when
/// the frame is too short for its link header.
/// The VLAN id of a frame's outer 802.1Q (or 802.1ad) tag, when the frame is Ethernet and
/// tagged.
pub fn vlan(link: LinkType, frame: &[u8]) -> Option<u16> {
    if link != LinkType::Ethernet || frame.len() < 16 {
        return None;
    }
    let ethertype = be16(frame, 12);
    (ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ).then(|| be16(frame, 14) & 0x0fff)
}

pub(crate) fn link_header(link: LinkType, frame: &[u8]) -> Option<(usize, L3)> {
    match link {
        LinkType::Ethernet => {
            if frame.len() < 14 {
                return None;
            }
            let mut off = 12;
            let mut ethertype = be16(frame, off);
            let mut tags = 0;
            while (ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ) && tags < 2 {
                off += 4;
                if frame.len() < off + 2 {
                    return None;
                }
                ethertype = be16(frame, off);
                tags += 1;
            }
            Some((off + 2, from_ethertype(ethertype)))
        }
        LinkType::LinuxSll => {
            // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2)
            if frame.len() < 16 {
                return None;
            }
            Some((16, from_ethertype(be16(frame, 14))))
        }
        LinkType::LinuxSll2 => {
            // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type, addr len, addr (8)
            if frame.len() < 20 {
                return None;
            }
            Some((20, from_ethertype(be16(frame, 0))))
        }
        LinkType::RawIp => Some((0, L3::AnyIp)),
        LinkType::RawIpv4 => Some((0, L3::Ipv4)),
        LinkType::RawIpv6 => Some((0, L3::Ipv6)),
        LinkType::Loopback { big_endian } => {
            if frame.len() < 4 {
                return None;
            }
            let b = [frame[0], frame[1], frame[2], frame[3]];
            let family = if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 depending on the OS.
            let l3 = match family {
                2 => L3::Ipv4,
                10 | 24 | 28 | 30 => L3::Ipv6,
                _ => L3::Other,
            };
            Some((4, l3))
        }
        LinkType::Other(_) => Some((0, L3::Other)),
    }
}

#[cfg(test)]
mod vlan_tests {
    use super::*;

    #[test]
    fn the_outer_tag_names_the_vlan() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x07, 0x88, 0xa8, 0x00, 0x05, 0x08, 0x00]);
        assert_eq!(vlan(LinkType::Ethernet, &f), Some(7)); // priority bits masked off
        f[12] = 0x88;
        f[13] = 0xa8;
        assert_eq!(vlan(LinkType::Ethernet, &f), Some(7));
        f[12] = 0x08;
        f[13] = 0x00;
        assert_eq!(vlan(LinkType::Ethernet, &f), None);
        assert_eq!(vlan(LinkType::RawIpv4, &f), None);
        assert_eq!(vlan(LinkType::Ethernet, &f[..15]), None);
    }
}
