//! The host end of a sandbox's veth, made with rtnetlink requests on a socket of our own rather
//! than an `ip` process per pod: creating the pair (the pod end straight into the sandbox's
//! namespace), putting the host end on the bridge and up, hairpin on, and deleting it. An exec
//! of `ip` cost every pod of a burst a fork, an exec and its netlink setup.
//!
//! The messages are `netlink-packet-route`'s; the socket is a plain blocking `netlink-sys` one,
//! opened in the calling thread's network namespace (the host's for the agent, a test's own in
//! tests), used for one sandbox and dropped. The pod end's IPv6 setting goes through one opened
//! inside the sandbox's namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridgePort, InfoData, InfoKind, InfoPortData,
    InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

pub(super) struct Rtnetlink {
    socket: Socket,
    sequence: u32,
}

impl Rtnetlink {
    pub(super) fn open() -> io::Result<Rtnetlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnetlink {
            socket,
            sequence: 0,
        })
    }

    /// `ip link add HOST type veth peer name PEER netns NETNS` with `master BRIDGE` folded into
    /// the same request. The host end stays down, so that [`Rtnetlink::skip_ipv6_addresses`]
    /// can act before [`Rtnetlink::attach_to_bridge`] brings it up.
    pub(super) fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: &File,
        bridge_index: u32,
    ) -> io::Result<()> {
        let mut peer_message = LinkMessage::default();
        peer_message
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_message
            .attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut message = LinkMessage::default();
        message.attributes.extend([
            LinkAttribute::IfName(host.to_string()),
            LinkAttribute::Controller(bridge_index),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ]);
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// `ip link set INDEX addrgenmode none`: the link gets no IPv6 address, so it never probes
    /// one (DAD) nor reports the multicast groups of one (MLD). Over netlink rather than the
    /// `disable_ipv6` sysctl: the kernel's handler of that sysctl only try-locks RTNL and
    /// restarts the write while anyone else holds it, so in a burst of veths each write spun
    /// for milliseconds. A kernel without IPv6 has nothing to turn off.
    pub(super) fn skip_ipv6_addresses(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message
            .attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]));
        match self.request(RouteNetlinkMessage::NewLink(message), 0) {
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Ok(()),
            other => other,
        }
    }

    /// `ip link set INDEX master BRIDGE up`.
    pub(super) fn attach_to_bridge(&mut self, index: u32, bridge_index: u32) -> io::Result<()> {
        let mut message = up_message(index);
        message
            .attributes
            .push(LinkAttribute::Controller(bridge_index));
        self.request(RouteNetlinkMessage::NewLink(message), 0)
    }

    /// `ip link set INDEX type bridge_slave hairpin on` (the link must be on the bridge already:
    /// the bridge handles the port's settings).
    pub(super) fn set_hairpin(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(message), 0)
    }

    /// `ip link del INDEX` (a veth's peer goes with it).
    pub(super) fn delete(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(message), 0)
    }

    /// Sends one request and waits for its acknowledgement; a refusal is the kernel's errno.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;
        loop {
            let (reply, _) = self.socket.recv_from_full()?;
            let mut rest = reply.as_slice();
            while !rest.is_empty() {
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = (parsed.header.length as usize).max(16);
                rest = rest.get(length.next_multiple_of(4)..).unwrap_or_default();
                if parsed.header.sequence_number != self.sequence {
                    continue;
                }
                if let NetlinkPayload::Error(error) = parsed.payload {
                    return match error.code {
                        None => Ok(()),
                        Some(_) => Err(error.to_io()),
                    };
                }
            }
        }
    }
}

/// A link message for `index` (0: a new link) that sets the link up.
fn up_message(index: u32) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
}
