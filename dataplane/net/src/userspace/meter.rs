//! A pass-through `phy::Device` that counts packets.
//!
//! The driver wraps the stack's device in a [`Meter`] for the length of one poll round. The
//! counts tell it whether the round moved any packet: on a loopback (or any device that can
//! hand a transmitted frame straight back) a transmitted packet means there is more to
//! receive, so the driver polls again instead of going to sleep.

use std::cell::Cell;

use smoltcp::phy::{Device, DeviceCapabilities, PacketMeta, TxToken};
use smoltcp::time::Instant;

/// Borrows a device for one poll round and counts the packets that cross it.
pub(super) struct Meter<'d, D: Device> {
    dev: &'d mut D,
    rx: u64,
    tx: Cell<u64>,
}

impl<'d, D: Device> Meter<'d, D> {
    pub(super) fn new(dev: &'d mut D) -> Self {
        Meter {
            dev,
            rx: 0,
            tx: Cell::new(0),
        }
    }

    /// Frames handed to the stack by the device.
    pub(super) fn rx(&self) -> u64 {
        self.rx
    }

    /// Frames the stack filled for transmission (including ones a fault injector drops).
    pub(super) fn tx(&self) -> u64 {
        self.tx.get()
    }
}

impl<D: Device> Device for Meter<'_, D> {
    type RxToken<'a>
        = D::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = MeterTx<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.dev.receive(timestamp)?;
        self.rx += 1;
        Some((
            rx,
            MeterTx {
                inner: tx,
                count: &self.tx,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let tx = self.dev.transmit(timestamp)?;
        Some(MeterTx {
            inner: tx,
            count: &self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.dev.capabilities()
    }
}

/// A transmit token that counts itself when it is used.
pub(super) struct MeterTx<'a, T> {
    inner: T,
    count: &'a Cell<u64>,
}

impl<T: TxToken> TxToken for MeterTx<'_, T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.count.set(self.count.get() + 1);
        self.inner.consume(len, f)
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.inner.set_meta(meta)
    }
}
