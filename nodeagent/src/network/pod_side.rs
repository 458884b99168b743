//! The pod end of a sandbox's veth, configured from inside the sandbox's network namespace
//! with the classic interface ioctls (loopback up, the address and netmask, the interface up,
//! the default route via the gateway) rather than an `ip` process: an exec and its netlink
//! setup cost milliseconds of CPU, which every pod of a burst paid.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The kernel's `struct rtentry` (linux/route.h), which the libc crate has only for musl.
#[repr(C)]
struct RouteEntry {
    pad1: libc::c_ulong,
    destination: libc::sockaddr,
    gateway: libc::sockaddr,
    genmask: libc::sockaddr,
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    device: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    initial_rtt: libc::c_ushort,
}

/// Configures `interface` (already in this thread's network namespace) as the pod's: `ip`'s
/// `link set lo up`, `address replace IP/PREFIX dev IF`, `link set IF up` and
/// `route replace default via GATEWAY dev IF`.
pub(super) fn configure(
    interface: &str,
    ip: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> io::Result<()> {
    let socket = inet_socket()?;
    set_up(&socket, "lo")?;
    set_address(&socket, interface, libc::SIOCSIFADDR, ip)?;
    set_address(
        &socket,
        interface,
        libc::SIOCSIFNETMASK,
        netmask(prefix_len),
    )?;
    set_up(&socket, interface)?;
    add_default_route(&socket, interface, gateway)
}

fn netmask(prefix_len: u8) -> Ipv4Addr {
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(bits)
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain socket call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and nobody else holds.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    // SAFETY: an all-zero ifreq is valid (an empty name and a zero union).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    Ok(request)
}

fn ioctl<T>(socket: &OwnedFd, request: libc::c_ulong, argument: &mut T) -> io::Result<()> {
    // SAFETY: `argument` is the structure this request reads or writes, and outlives the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), request, argument as *mut T) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_up(socket: &OwnedFd, name: &str) -> io::Result<()> {
    let mut request = interface_request(name)?;
    ioctl(socket, libc::SIOCGIFFLAGS, &mut request)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    ioctl(socket, libc::SIOCSIFFLAGS, &mut request)
}

fn socket_address(ip: Ipv4Addr) -> libc::sockaddr {
    let inet = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it by family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet) }
}

fn set_address(
    socket: &OwnedFd,
    name: &str,
    request_code: libc::c_ulong,
    ip: Ipv4Addr,
) -> io::Result<()> {
    let mut request = interface_request(name)?;
    request.ifr_ifru.ifru_addr = socket_address(ip);
    ioctl(socket, request_code, &mut request)
}

fn add_default_route(socket: &OwnedFd, name: &str, gateway: Ipv4Addr) -> io::Result<()> {
    let device = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut route = RouteEntry {
        pad1: 0,
        destination: socket_address(Ipv4Addr::UNSPECIFIED),
        gateway: socket_address(gateway),
        genmask: socket_address(Ipv4Addr::UNSPECIFIED),
        flags: libc::RTF_UP | libc::RTF_GATEWAY,
        pad2: 0,
        pad3: 0,
        pad4: std::ptr::null_mut(),
        metric: 0,
        device: device.as_ptr().cast_mut(),
        mtu: 0,
        window: 0,
        initial_rtt: 0,
    };
    match ioctl(socket, libc::SIOCADDRT, &mut route) {
        // Wired before (an agent restart): the same route is there.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks_from_prefix_lengths() {
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(16), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(interface_request("eth0").is_ok());
        assert!(interface_request("").is_err());
        assert!(interface_request("a-name-far-too-long").is_err());
    }
}
