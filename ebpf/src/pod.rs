//! Rust mirrors of the map keys and values declared in `src/bpf/mosn_capture.h`, and their
//! `aya::Pod` impls.
//!
//! **Why `unsafe` is allowed here (and nowhere else in the crate):** aya copies map keys and
//! values to and from the kernel as raw bytes, so it requires the `unsafe trait Pod`
//! ("every bit pattern is a valid value, no padding, no pointers"). The impls below are that
//! promise for plain `#[repr(C)]` structs of integers whose layout matches the C structs;
//! the `const` assertions fail the build when a size drifts from the C side.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `AF_INET` as stored in [`MosnAddr::family`].
pub(crate) const AF_INET: u16 = 2;
/// `AF_INET6` as stored in [`MosnAddr::family`].
pub(crate) const AF_INET6: u16 = 10;

/// `struct mosn_config`: the single entry of the `config` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MosnConfig {
    pub flags: u32,
    pub proxy_uid: u32,
    pub proxy_mark: u32,
    /// Network order.
    pub proxy_ip4: u32,
    /// Network order.
    pub proxy_ip6: [u32; 4],
    /// Network order.
    pub outbound_port: u16,
    pub _pad: u16,
}

/// `struct mosn_addr`: an address and port, IPv4 (and IPv4-mapped IPv6) in `ip[0]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct MosnAddr {
    /// Network order words.
    pub ip: [u32; 4],
    /// Network order.
    pub port: u16,
    pub family: u16,
}

impl MosnAddr {
    /// The key the eBPF side builds for `addr` (IPv4-mapped IPv6 folds into IPv4).
    pub fn from_socket_addr(addr: SocketAddr) -> MosnAddr {
        let port = addr.port().to_be();
        let ip = match addr.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => MosnAddr {
                ip: [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
                port,
                family: AF_INET,
            },
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                MosnAddr {
                    ip: [word(0), word(4), word(8), word(12)],
                    port,
                    family: AF_INET6,
                }
            }
        }
    }

    /// The socket address this key stands for, if the family is known.
    pub fn to_socket_addr(self) -> Option<SocketAddr> {
        let port = u16::from_be(self.port);
        match self.family {
            AF_INET => Some(SocketAddr::new(
                Ipv4Addr::from(self.ip[0].to_ne_bytes()).into(),
                port,
            )),
            AF_INET6 => {
                let mut o = [0u8; 16];
                for (i, w) in self.ip.iter().enumerate() {
                    o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
                }
                Some(SocketAddr::new(Ipv6Addr::from(o).into(), port))
            }
            _ => None,
        }
    }
}

/// `struct mosn_sock_key` (only its size is checked here: userspace never builds one).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MosnSockKey {
    pub sip: [u32; 4],
    pub dip: [u32; 4],
    pub sport: u32,
    pub dport: u32,
    pub family: u32,
}

// Sizes of the C structs (clang, BPF target); a mismatch is a layout drift.
const _: () = assert!(std::mem::size_of::<MosnConfig>() == 36);
const _: () = assert!(std::mem::size_of::<MosnAddr>() == 20);
const _: () = assert!(std::mem::size_of::<MosnSockKey>() == 44);

// SAFETY: `MosnConfig` is `#[repr(C)]`, made only of integers (every bit pattern is valid),
// has no padding (4 * 8 + 2 + 2 = 36 bytes, checked above) and no pointers.
unsafe impl aya::Pod for MosnConfig {}
// SAFETY: `MosnAddr` is `#[repr(C)]`, made only of integers, has no padding (16 + 2 + 2 = 20
// bytes, checked above) and no pointers.
unsafe impl aya::Pod for MosnAddr {}
// SAFETY: `MosnSockKey` is `#[repr(C)]`, made only of `u32`s (no padding, 44 bytes, checked
// above) and no pointers.
unsafe impl aya::Pod for MosnSockKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_keys_round_trip_and_fold_mapped_v4() {
        let v4: SocketAddr = "127.0.0.2:8080".parse().unwrap();
        let k = MosnAddr::from_socket_addr(v4);
        assert_eq!(k.family, AF_INET);
        // network order in memory: the bytes read 127.0.0.2 and 0x1f90
        assert_eq!(k.ip[0].to_ne_bytes(), [127, 0, 0, 2]);
        assert_eq!(k.port.to_ne_bytes(), [0x1f, 0x90]);
        assert_eq!(k.to_socket_addr(), Some(v4));

        let mapped: SocketAddr = "[::ffff:127.0.0.2]:8080".parse().unwrap();
        assert_eq!(MosnAddr::from_socket_addr(mapped), k);

        let v6: SocketAddr = "[fd00::1:2]:443".parse().unwrap();
        let k6 = MosnAddr::from_socket_addr(v6);
        assert_eq!(k6.family, AF_INET6);
        assert_eq!(k6.to_socket_addr(), Some(v6));
    }
}
