//! The TUN devices of the znets (`zt0` in each router namespace), by znet id, for the event
//! loop's data path: reading them in turn so that no busy znet starves the others, and writing
//! packets (coalesced with GRO when the device has offload).
//!
//! Owned by the event loop; the devices are made on the znet worker and handed over.

use crate::daemon::local;
use std::collections::HashMap;
use std::sync::Arc;
use tun_rs::AsyncDevice;

/// The TUN devices of the znets, by id, for the data path (and whether each has offload: then
/// every packet read or written starts with a virtio-net header).
#[derive(Default, Clone)]
pub struct Devices(HashMap<u64, (Arc<AsyncDevice>, bool)>);

impl Devices {
    /// Writes a packet to znet `id`'s TUN. `framed` starts with
    /// [`local::VIRTIO_NET_HDR_LEN`] zero bytes (room for the header), then the packet.
    pub async fn write_framed(&self, id: u64, framed: &[u8]) {
        let Some((d, offload)) = self.0.get(&id) else {
            return;
        };
        let p = if *offload {
            framed
        } else {
            framed.get(local::VIRTIO_NET_HDR_LEN..).unwrap_or(&[])
        };
        if let Err(e) = d.send(p).await {
            tracing::debug!("znet TUN write: {e}");
        }
    }

    /// Writes framed packets to znet `id`'s TUN, coalescing them (GRO) when it has offload.
    pub async fn write_batch(&self, id: u64, gro: &mut local::GROTable, bufs: &mut [Vec<u8>]) {
        let Some((d, offload)) = self.0.get(&id) else {
            return;
        };
        if *offload {
            if let Err(e) =
                local::LocalIo::send_multiple(&**d, gro, bufs, local::VIRTIO_NET_HDR_LEN).await
            {
                tracing::debug!("znet TUN write: {e}");
            }
            return;
        }
        for b in bufs.iter() {
            self.write_framed(id, b).await;
        }
    }

    /// Writes a packet (without header room) to znet `id`'s TUN.
    pub async fn write(&self, id: u64, packet: &[u8]) {
        let mut framed = vec![0u8; local::VIRTIO_NET_HDR_LEN];
        framed.extend_from_slice(packet);
        self.write_framed(id, &framed).await;
    }

    /// Waits until one of the devices may be readable; returns its id (polling starts after
    /// `last`, so a busy znet cannot starve the others). Never ready without devices.
    pub async fn readable(&self, last: u64) -> u64 {
        let mut ids: Vec<u64> = self.0.keys().copied().collect();
        ids.sort_unstable();
        let start = ids.iter().position(|i| *i > last).unwrap_or(0);
        std::future::poll_fn(|cx| {
            for k in 0..ids.len() {
                let id = ids[(start + k) % ids.len()];
                if let Some((d, _)) = self.0.get(&id)
                    && d.poll_readable(cx).is_ready()
                {
                    return std::task::Poll::Ready(id);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Adds znet `id`'s device (and whether it has offload).
    pub fn insert(&mut self, id: u64, device: Arc<AsyncDevice>, offload: bool) {
        self.0.insert(id, (device, offload));
    }

    /// Stops reading znet `id`'s device (it failed, or the znet is gone) and hands it back,
    /// to be closed off the loop.
    pub fn remove(&mut self, id: u64) -> Option<Arc<AsyncDevice>> {
        self.0.remove(&id).map(|(d, _)| d)
    }

    /// The device of znet `id`.
    pub fn get(&self, id: u64) -> Option<Arc<AsyncDevice>> {
        self.0.get(&id).map(|(d, _)| d.clone())
    }
}
