//! The TUN device: created with tun-rs, given the node address with the overlay prefix (so the
//! kernel routes all of `0600::/7` into it), with TCP segmentation/receive offload when the
//! kernel allows it.

use crate::config::TunConfig;
use anyhow::Context;
#[cfg(target_os = "linux")]
use routing::OVERLAY_PREFIX_LEN;
use std::net::Ipv6Addr;
use tun_rs::AsyncDevice;

/// Transmit queue of the TUN device, as for an Ethernet device.
#[cfg(target_os = "linux")]
const TX_QUEUE_LEN: u32 = 1000;

/// Opens the TUN device `cfg.name` with address `addr`/7. Returns the device and whether
/// offload is on.
#[cfg(target_os = "linux")]
pub fn open(cfg: &TunConfig, addr: Ipv6Addr) -> anyhow::Result<(AsyncDevice, bool)> {
    let build = |offload: bool| {
        tun_rs::DeviceBuilder::new()
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

/// Outside Linux meshd runs inside an app (`mobile-ffi`), on the descriptor or packet flow the
/// OS gives the app: it creates no TUN device itself.
#[cfg(not(target_os = "linux"))]
pub fn open(cfg: &TunConfig, _addr: Ipv6Addr) -> anyhow::Result<(AsyncDevice, bool)> {
    anyhow::bail!(
        "cannot create TUN device {:?} on this platform: embed the node in an app \
         (mobile-ffi) and hand it the OS's TUN descriptor or packet flow",
        cfg.name
    )
}

/// Adopts a TUN descriptor that someone else opened and configured (Android's `VpnService`
/// hands an app one: address, routes and MTU are set by the OS). meshd works on a duplicate it
/// owns, so the caller keeps its own descriptor and closes it when it likes.
///
/// The descriptor must be open, must be a TUN (layer 3) device, and must carry bare packets
/// (`IFF_NO_PI`, no `IFF_VNET_HDR`): anything else is refused with the reason.
///
/// Returns the duplicate; [`from_owned`] makes the device of it (inside the node's runtime).
pub fn adopt(fd: std::os::fd::RawFd) -> anyhow::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    if fd < 0 {
        anyhow::bail!("{fd} is not a file descriptor (it must be 0 or more)");
    }
    // SAFETY: F_GETFD reads the descriptor's flags; any integer is a valid argument, and a
    // closed one gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("descriptor {fd} is not open ({e}); pass the TUN descriptor the OS gave");
    }
    // SAFETY: an ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes the interface name and flags into the ifreq we own, which
    // outlives the call.
    let r = unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut req as *mut libc::ifreq) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // The OS forbids the query (an Android sandbox may): trust the caller.
            Some(libc::EPERM | libc::EACCES) => {
                tracing::debug!(
                    "cannot check the TUN descriptor's flags ({e}); assuming IFF_TUN|IFF_NO_PI"
                )
            }
            _ => anyhow::bail!("descriptor {fd} is not a TUN device ({e})"),
        }
    } else {
        // SAFETY: TUNGETIFF succeeded, so it filled the flags member of the union.
        let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
        if flags & libc::IFF_TUN == 0 {
            anyhow::bail!("descriptor {fd} is a TAP device; a TUN (IFF_TUN) device is needed");
        }
        if flags & libc::IFF_NO_PI == 0 {
            anyhow::bail!(
                "descriptor {fd} carries packet information headers; open it with IFF_NO_PI"
            );
        }
        if flags & libc::IFF_VNET_HDR != 0 {
            anyhow::bail!(
                "descriptor {fd} was opened with IFF_VNET_HDR, which meshd cannot adopt; open it without"
            );
        }
    }
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor of the same open file; fd is open (checked
    // above).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        let e = std::io::Error::last_os_error();
        anyhow::bail!("cannot duplicate descriptor {fd}: {e}");
    }
    // SAFETY: dup is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// The device of a descriptor [`adopt`] returned. Must run inside a tokio runtime.
pub fn from_owned(fd: std::os::fd::OwnedFd) -> anyhow::Result<AsyncDevice> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: raw is an open TUN descriptor without IFF_VNET_HDR and with IFF_NO_PI (checked by
    // `adopt`, or vouched for by the OS that handed it over), owned by nobody else: the device
    // takes it over and closes it when dropped.
    unsafe { AsyncDevice::from_fd(raw) }.with_context(|| format!("cannot use TUN descriptor {raw}"))
}
