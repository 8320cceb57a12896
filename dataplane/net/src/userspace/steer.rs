//! Which of several stacks sharing one address (one per queue of a port, one per worker) a
//! received Ethernet frame is for.
//!
//! The NIC (or the kernel behind a virtual PMD: TAP's flow table, af_packet's fanout hash)
//! spreads frames over the queues by its own rule, which the stacks cannot know in advance.
//! So every frame is owned by a rule of ours, the same on every queue:
//!
//! - TCP to a port in the ephemeral range: the stack whose share of the range holds the port
//!   (its own outgoing connection, [`super::ephemeral_share`]);
//! - other TCP (a listener's port): a hash of the peer's address and port, so every segment
//!   of an accepted connection, the SYN included, reaches the one stack that accepted it;
//! - ARP and IPv6 neighbour discovery (ICMPv6 133-137): every stack (each keeps its own
//!   neighbour cache and answers requests);
//! - anything else (ICMP, fragments, IPv6 extension headers): the queue it arrived on.
//!
//! IPv4 and IPv6 alike: TCP right after a fixed IPv6 header is owned as TCP over IPv4 is.
//!
//! A worker forwards the frames that are not its own to their owner's inbox.

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV6_HDR: usize = 40;
const IPPROTO_ICMPV6: u8 = 58;
const ETHER_HDR: usize = 14;
const IPPROTO_TCP: u8 = 6;

/// Where a received frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The stack of the queue it arrived on.
    Here,
    /// Another stack.
    To(u16),
    /// Every stack (a copy to each of the others).
    All,
}

/// The owner rule for `queues` stacks with [`super::ephemeral_share`]s of the ephemeral
/// ports.
#[derive(Debug, Clone)]
pub struct Steering {
    queues: u16,
}

impl Steering {
    /// The rule for `queues` stacks (at least 1).
    pub fn new(queues: u16) -> Steering {
        Steering {
            queues: queues.max(1),
        }
    }

    /// Stacks under the rule.
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The owner of `frame`, received on queue `here`.
    pub fn verdict(&self, frame: &[u8], here: u16) -> Verdict {
        if self.queues == 1 {
            return Verdict::Here;
        }
        let owner = match self.owner(frame) {
            Owner::Every => return Verdict::All,
            Owner::Arrival => return Verdict::Here,
            Owner::Queue(q) => q,
        };
        if owner == here {
            Verdict::Here
        } else {
            Verdict::To(owner)
        }
    }

    fn owner(&self, frame: &[u8]) -> Owner {
        let be16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
        };
        match be16(12) {
            Some(ETHERTYPE_ARP) => return Owner::Every,
            Some(ETHERTYPE_IPV4) => {}
            Some(ETHERTYPE_IPV6) => return self.owner_v6(frame),
            _ => return Owner::Arrival,
        }
        let Some(&ver_ihl) = frame.get(ETHER_HDR) else {
            return Owner::Arrival;
        };
        let ihl = usize::from(ver_ihl & 0x0f) * 4;
        // Fragment offset or more-fragments: only the first fragment has the ports.
        let fragmented = be16(ETHER_HDR + 6).is_none_or(|f| f & 0x3fff != 0);
        if ver_ihl >> 4 != 4 || ihl < 20 || fragmented {
            return Owner::Arrival;
        }
        if frame.get(ETHER_HDR + 9) != Some(&IPPROTO_TCP) {
            return Owner::Arrival;
        }
        self.tcp_owner(frame, ETHER_HDR + ihl, ETHER_HDR + 12..ETHER_HDR + 16)
    }

    /// The owner of a TCP segment whose header starts at `tcp`, sent from the address at
    /// `src` (4 or 16 bytes; folded to 32 bits for the hash, the same peer always alike).
    fn tcp_owner(&self, frame: &[u8], tcp: usize, src: std::ops::Range<usize>) -> Owner {
        let be16 = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
        };
        let (Some(src_port), Some(dst_port)) = (be16(tcp), be16(tcp + 2)) else {
            return Owner::Arrival;
        };
        if let Some(q) = super::ephemeral_owner(dst_port, self.queues) {
            return Owner::Queue(q);
        }
        let Some(src) = frame.get(src) else {
            return Owner::Arrival;
        };
        let folded = src.chunks_exact(4).fold(0u32, |acc, w| {
            acc ^ u32::from_be_bytes([w[0], w[1], w[2], w[3]])
        });
        Owner::Queue(self.spread(folded, src_port))
    }

    fn owner_v6(&self, frame: &[u8]) -> Owner {
        if frame.get(ETHER_HDR).is_none_or(|v| v >> 4 != 6) {
            return Owner::Arrival;
        }
        match frame.get(ETHER_HDR + 6) {
            Some(&IPPROTO_TCP) => {}
            Some(&IPPROTO_ICMPV6) => {
                // Router/neighbour solicitations and advertisements, redirects.
                return match frame.get(ETHER_HDR + IPV6_HDR) {
                    Some(133..=137) => Owner::Every,
                    _ => Owner::Arrival,
                };
            }
            // Extension headers (fragments among them), other protocols.
            _ => return Owner::Arrival,
        }
        self.tcp_owner(frame, ETHER_HDR + IPV6_HDR, ETHER_HDR + 8..ETHER_HDR + 24)
    }

    /// The stack for connections from `addr:port` to a listener.
    fn spread(&self, addr: u32, port: u16) -> u16 {
        // Fibonacci hashing of the peer's address and port: cheap, and consecutive client
        // ports land on different stacks.
        let h = (u64::from(addr) << 16 | u64::from(port)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> 32) % u64::from(self.queues)) as u16
    }
}

enum Owner {
    Every,
    Arrival,
    Queue(u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = IPPROTO_TCP;
        f[14 + 12..14 + 16].copy_from_slice(&src);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn one_queue_keeps_everything() {
        let s = Steering::new(1);
        assert_eq!(s.verdict(&tcp([1, 2, 3, 4], 80, 50000), 0), Verdict::Here);
        assert_eq!(s.verdict(&[], 0), Verdict::Here);
    }

    #[test]
    fn replies_go_to_the_stack_that_owns_the_port() {
        for queues in 2..=4u16 {
            let s = Steering::new(queues);
            for q in 0..queues {
                let share = super::super::ephemeral_share(q, queues);
                for port in [*share.start(), *share.end()] {
                    let f = tcp([198, 18, 0, 1], 8080, port);
                    assert_eq!(
                        s.verdict(&f, q),
                        Verdict::Here,
                        "{queues} queues, port {port}"
                    );
                    let other = (q + 1) % queues;
                    assert_eq!(s.verdict(&f, other), Verdict::To(q));
                }
            }
        }
    }

    /// Segments to a listener from 64 client ports (`frame(port)`), arriving on queue
    /// `arrival` of two: both stacks take some, and a segment on its owner's queue stays.
    fn assert_spread(frame: impl Fn(u16) -> Vec<u8>, arrival: u16) {
        let s = Steering::new(2);
        let mut seen = [0usize; 2];
        for port in 30000..30064u16 {
            let f = frame(port);
            let owner = match s.verdict(&f, arrival) {
                Verdict::Here => arrival,
                Verdict::To(q) => q,
                Verdict::All => panic!("TCP is never broadcast"),
            };
            seen[usize::from(owner)] += 1;
            assert_eq!(s.verdict(&f, owner), Verdict::Here);
        }
        assert!(seen[0] > 8 && seen[1] > 8, "spread: {seen:?}");
    }

    #[test]
    fn accepted_connections_spread_and_stay_put() {
        assert_spread(|port| tcp([198, 18, 0, 1], port, 80), 0);
    }

    #[test]
    fn arp_goes_everywhere_and_odd_frames_stay() {
        let s = Steering::new(3);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(s.verdict(&arp, 1), Verdict::All);
        let mut frag = tcp([10, 0, 0, 1], 1, 80);
        frag[14 + 6] = 0x20; // more fragments
        assert_eq!(s.verdict(&frag, 2), Verdict::Here);
        let mut udp = tcp([10, 0, 0, 1], 1, 50000);
        udp[14 + 9] = 17;
        assert_eq!(s.verdict(&udp, 1), Verdict::Here);
        for len in 0..54 {
            let f = tcp([10, 0, 0, 1], 1, 50000);
            let _ = s.verdict(&f[..len], 0);
        }
    }

    fn tcp6(src: [u16; 8], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        f[14] = 0x60;
        f[14 + 6] = IPPROTO_TCP;
        for (i, w) in src.iter().enumerate() {
            f[14 + 8 + 2 * i..14 + 10 + 2 * i].copy_from_slice(&w.to_be_bytes());
        }
        f[54..56].copy_from_slice(&sport.to_be_bytes());
        f[56..58].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn ipv6_tcp_is_owned_as_ipv4_tcp_is() {
        let peer = [0xfd00, 0x198, 0x18, 0x3, 0, 0, 0, 1];
        for queues in 2..=4u16 {
            let s = Steering::new(queues);
            // Replies to an outgoing connection: the stack whose share holds the port.
            for q in 0..queues {
                let port = *super::super::ephemeral_share(q, queues).start();
                let f = tcp6(peer, 8080, port);
                assert_eq!(s.verdict(&f, q), Verdict::Here);
                assert_eq!(s.verdict(&f, (q + 1) % queues), Verdict::To(q));
            }
        }
        // Connections to a listener spread over the stacks and stay put.
        assert_spread(|port| tcp6(peer, port, 80), 1);
    }

    #[test]
    fn neighbour_discovery_goes_everywhere_other_ipv6_stays() {
        let s = Steering::new(3);
        let mut ns = tcp6([0xfd00, 0, 0, 0, 0, 0, 0, 1], 0, 0);
        ns[14 + 6] = IPPROTO_ICMPV6;
        for t in 133..=137u8 {
            ns[54] = t;
            assert_eq!(s.verdict(&ns, 1), Verdict::All, "ICMPv6 type {t}");
        }
        ns[54] = 128; // echo request
        assert_eq!(s.verdict(&ns, 2), Verdict::Here);
        let mut frag = tcp6([0xfd00, 0, 0, 0, 0, 0, 0, 1], 1, 50000);
        frag[14 + 6] = 44; // fragment header
        assert_eq!(s.verdict(&frag, 2), Verdict::Here);
        let mut v4_in_v6 = tcp6([0xfd00, 0, 0, 0, 0, 0, 0, 1], 1, 50000);
        v4_in_v6[14] = 0x45;
        assert_eq!(s.verdict(&v4_in_v6, 1), Verdict::Here);
        for len in 0..74 {
            let f = tcp6([0xfd00, 0, 0, 0, 0, 0, 0, 1], 1, 50000);
            let _ = s.verdict(&f[..len], 0);
        }
    }
}
