//! Local TCP port bookkeeping for one stack: listeners and ephemeral (connect) ports.

use std::collections::HashMap;
use std::io;

/// First port of the ephemeral range (IANA dynamic ports, as smoltcp's docs suggest).
pub(super) const EPHEMERAL_FIRST: u16 = 49152;
/// Last port of the ephemeral range.
pub(super) const EPHEMERAL_LAST: u16 = 65535;
const EPHEMERAL_COUNT: u32 = (EPHEMERAL_LAST - EPHEMERAL_FIRST) as u32 + 1;

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
    cursor: u32,
}

impl Ports {
    pub(super) fn new(seed: u64) -> Self {
        Ports {
            used: HashMap::new(),
            cursor: (seed % u64::from(EPHEMERAL_COUNT)) as u32,
        }
    }

    fn next_free(&mut self) -> io::Result<u16> {
        for _ in 0..EPHEMERAL_COUNT {
            let port = EPHEMERAL_FIRST + (self.cursor % EPHEMERAL_COUNT) as u16;
            self.cursor = (self.cursor + 1) % EPHEMERAL_COUNT;
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
        let mut p = Ports::new(7);
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
        let mut p = Ports::new(0);
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
    fn exhaustion_is_an_error() {
        let mut p = Ports::new(3);
        for _ in 0..EPHEMERAL_COUNT {
            p.connect().unwrap();
        }
        assert_eq!(p.connect().unwrap_err().kind(), io::ErrorKind::AddrInUse);
    }
}
