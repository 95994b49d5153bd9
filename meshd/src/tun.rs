//! The TUN device: created with tun-rs, given the node address with the overlay prefix (so the
//! kernel routes all of `0600::/7` into it), with TCP segmentation/receive offload when the
//! kernel allows it.

use crate::config::TunConfig;
use anyhow::Context;
use routing::OVERLAY_PREFIX_LEN;
use std::net::Ipv6Addr;
use tun_rs::{AsyncDevice, DeviceBuilder};

/// Transmit queue of the TUN device, as for an Ethernet device.
const TX_QUEUE_LEN: u32 = 1000;

/// Opens the TUN device `cfg.name` with address `addr`/7. Returns the device and whether
/// offload is on.
pub fn open(cfg: &TunConfig, addr: Ipv6Addr) -> anyhow::Result<(AsyncDevice, bool)> {
    let build = |offload: bool| {
        DeviceBuilder::new()
            .name(&cfg.name)
            .ipv6(addr, OVERLAY_PREFIX_LEN)
            .mtu(cfg.mtu)
            .offload(offload)
            // The kernel drops packets for the TUN when this queue is full; 500 (tun's default)
            // overflows in bursts without offload.
            .tx_queue_len(TX_QUEUE_LEN)
            .build_async()
    };
    if cfg.offload {
        match build(true) {
            Ok(dev) => return Ok((dev, true)),
            Err(e) => tracing::warn!(
                "TUN offload is not available ({e}); running without it (slower). \
                 Set tun.offload = false to silence this"
            ),
        }
    }
    let dev = build(false).with_context(|| {
        format!(
            "cannot create TUN device {:?}: meshd needs root (or CAP_NET_ADMIN) and /dev/net/tun",
            cfg.name
        )
    })?;
    Ok((dev, false))
}
