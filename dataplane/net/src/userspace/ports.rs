//! Local TCP port bookkeeping for one stack: listeners and ephemeral (connect) ports.

use std::collections::HashMap;
use std::io;

use std::ops::RangeInclusive;

/// First port of the ephemeral range (IANA dynamic ports, as smoltcp's docs suggest).
pub const EPHEMERAL_FIRST: u16 = 49152;
/// Last port of the ephemeral range.
pub const EPHEMERAL_LAST: u16 = 65535;

/// The whole ephemeral range.
pub const EPHEMERAL: RangeInclusive<u16> = EPHEMERAL_FIRST..=EPHEMERAL_LAST;

/// Share `index` of the ephemeral range split evenly between `of` stacks (workers sharing
/// one address, each on its own queue): consecutive, disjoint, the last share takes the
/// remainder. A packet's destination port then names the worker whose connection it is for.
pub fn ephemeral_share(index: u16, of: u16) -> RangeInclusive<u16> {
    let of = u32::from(of.max(1));
    let index = u32::from(index).min(of - 1);
    let count = u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1;
    let span = count / of;
    let first = u32::from(EPHEMERAL_FIRST) + index * span;
    let last = if index + 1 == of {
        u32::from(EPHEMERAL_LAST)
    } else {
        first + span - 1
    };
    // Both stay within EPHEMERAL_FIRST..=EPHEMERAL_LAST.
    (first as u16)..=(last as u16)
}

/// The share ([`ephemeral_share`]) of `of` that holds `port`; `None` outside the range.
pub fn ephemeral_owner(port: u16, of: u16) -> Option<u16> {
    if !EPHEMERAL.contains(&port) {
        return None;
    }
    let of = u32::from(of.max(1));
    let span = (u32::from(EPHEMERAL_LAST - EPHEMERAL_FIRST) + 1) / of;
    let q = u32::from(port - EPHEMERAL_FIRST) / span.max(1);
    // The last share takes the remainder; below `of`, so it fits.
    Some(q.min(of - 1) as u16)
}

/// Who holds a local port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `count` listeners; they may share the port only if every one of them asked for
    /// `SO_REUSEPORT`.
    Listen { count: usize, reuseport: bool },
    /// One outgoing connection (ports are not shared between connections, which keeps the
    /// 4-tuple unique without looking at the remote end).
    Connect,
}

/// The port table. Ephemeral ports are handed out in sequence from a random start so that a
/// port just released (whose peer may still hold TIME-WAIT state) is reused as late as possible.
#[derive(Debug)]
pub(super) struct Ports {
    used: HashMap<u16, Use>,
    /// The ephemeral ports this stack may use: first port and count.
    first: u16,
    count: u32,
    cursor: u32,
}

impl Ports {
    /// A table whose ephemeral ports come from `range` (not empty), starting at a point
    /// chosen by `seed`.
    pub(super) fn new(seed: u64, range: RangeInclusive<u16>) -> Self {
        let (first, last) = (*range.start(), (*range.end()).max(*range.start()));
        let count = u32::from(last - first) + 1;
        Ports {
            used: HashMap::new(),
            first,
            count,
            cursor: (seed % u64::from(count)) as u32,
        }
    }

    fn next_free(&mut self) -> io::Result<u16> {
        for _ in 0..self.count {
            // Below `count`, so within the range.
            let port = self.first + (self.cursor % self.count) as u16;
            self.cursor = (self.cursor + 1) % self.count;
            if !self.used.contains_key(&port) {
                return Ok(port);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "userspace stack: no free ephemeral port",
        ))
    }

    /// Reserves an ephemeral port for an outgoing connection.
    pub(super) fn connect(&mut self) -> io::Result<u16> {
        let port = self.next_free()?;
        self.used.insert(port, Use::Connect);
        Ok(port)
    }

    /// Reserves `port` (0: an ephemeral one) for a listener.
    pub(super) fn listen(&mut self, port: u16, reuseport: bool) -> io::Result<u16> {
        let port = if port == 0 { self.next_free()? } else { port };
        match self.used.get_mut(&port) {
            None => {
                self.used.insert(
                    port,
                    Use::Listen {
                        count: 1,
                        reuseport,
                    },
                );
                Ok(port)
            }
            Some(Use::Listen {
                count,
                reuseport: true,
            }) if reuseport => {
                *count += 1;
                Ok(port)
            }
            Some(_) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("userspace stack: port {port} is in use"),
            )),
        }
    }

    /// Releases one hold on `port`.
    pub(super) fn release(&mut self, port: u16) {
        match self.used.get_mut(&port) {
            Some(Use::Listen { count, .. }) if *count > 1 => *count -= 1,
            Some(_) => {
                self.used.remove(&port);
            }
            None => {}
        }
    }

    /// Ports currently held.
    pub(super) fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_are_distinct_and_recycled() {
        let mut p = Ports::new(7, EPHEMERAL);
        let a = p.connect().unwrap();
        let b = p.connect().unwrap();
        assert_ne!(a, b);
        assert!((EPHEMERAL_FIRST..=EPHEMERAL_LAST).contains(&a));
        p.release(a);
        p.release(b);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn listen_conflicts_unless_reuseport() {
        let mut p = Ports::new(0, EPHEMERAL);
        assert_eq!(p.listen(80, false).unwrap(), 80);
        assert_eq!(
            p.listen(80, false).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        p.release(80);
        p.listen(80, true).unwrap();
        p.listen(80, true).unwrap();
        p.release(80);
        assert_eq!(p.in_use(), 1);
        p.release(80);
        assert_eq!(p.in_use(), 0);
        let eph = p.listen(0, false).unwrap();
        assert!(eph >= EPHEMERAL_FIRST);
    }

    #[test]
    fn shares_split_the_range_and_bound_connect_ports() {
        for of in 1..=5u16 {
            let shares: Vec<_> = (0..of).map(|i| ephemeral_share(i, of)).collect();
            assert_eq!(*shares[0].start(), EPHEMERAL_FIRST);
            assert_eq!(*shares[usize::from(of) - 1].end(), EPHEMERAL_LAST);
            for w in shares.windows(2) {
                assert_eq!(*w[0].end() + 1, *w[1].start(), "consecutive, disjoint");
            }
        }
        for of in 1..=5u16 {
            for i in 0..of {
                let share = ephemeral_share(i, of);
                for port in [*share.start(), *share.end()] {
                    assert_eq!(ephemeral_owner(port, of), Some(i), "port {port} of {of}");
                }
            }
        }
        assert_eq!(ephemeral_owner(EPHEMERAL_FIRST - 1, 2), None);
        let share = ephemeral_share(1, 3);
        let mut p = Ports::new(12345, share.clone());
        let n = usize::from(share.end() - share.start()) + 1;
        for _ in 0..n {
            assert!(share.contains(&p.connect().unwrap()));
        }
        assert_eq!(p.connect().unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let mut p = Ports::new(3, EPHEMERAL);
        for _ in EPHEMERAL {
            p.connect().unwrap();
        }
        assert_eq!(p.connect().unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}
