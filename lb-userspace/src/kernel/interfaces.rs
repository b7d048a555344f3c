//! Which interfaces the XDP program must watch: the ones packets from the origins arrive
//! on, found by asking the kernel's routing table (no netlink needed).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
};

use aya::programs::XdpMode;
use serde::Deserialize;

use super::KernelError;

/// How to attach on interfaces other than `lo` (which only supports generic XDP).
///
/// The program only counts packets, so the speed of native mode buys little, while
/// attaching a native XDP program makes several NIC drivers (ixgbe, i40e, mlx4, ...)
/// reconfigure their queues, which briefly takes the link down: on a real host that
/// would drop lb's own traffic. So lb attaches in generic mode unless told otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    /// Generic (SKB) mode: works on every driver and never resets a link (Linux 4.12+).
    #[default]
    Auto,
    /// Native (driver) mode only; an interface whose driver lacks XDP is left unwatched.
    /// Attaching may reset the link on some drivers.
    Native,
    /// Generic mode everywhere (the same as `auto`).
    Skb,
}

/// One interface to attach to, with the modes to try in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachPlan {
    pub interface: String,
    pub modes: Vec<XdpMode>,
    /// Why this interface was chosen, for the start-up log.
    pub reason: String,
}

/// Plans attachments for `origins`: an explicit interface list wins; otherwise each
/// origin's route decides. Loopback and local addresses are reached through `lo`.
pub fn plan_attachments(
    origins: &[SocketAddr],
    explicit: &[String],
    mode: XdpAttachMode,
) -> Result<Vec<AttachPlan>, KernelError> {
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    if explicit.is_empty() {
        for origin in origins {
            let interface = route_interface(origin.ip())?;
            chosen
                .entry(interface)
                .or_insert_with(|| format!("route to origin {origin}"));
        }
    } else {
        for interface in explicit {
            chosen.insert(interface.clone(), "listed in kernel.interfaces".into());
        }
    }
    Ok(chosen
        .into_iter()
        .map(|(interface, reason)| {
            let modes = modes_for(&interface, mode);
            AttachPlan {
                interface,
                modes,
                reason,
            }
        })
        .collect())
}

fn modes_for(interface: &str, mode: XdpAttachMode) -> Vec<XdpMode> {
    if interface == "lo" {
        // The loopback driver has no native XDP hook.
        return vec![XdpMode::Skb];
    }
    match mode {
        XdpAttachMode::Native => vec![XdpMode::Driver],
        XdpAttachMode::Auto | XdpAttachMode::Skb => vec![XdpMode::Skb],
    }
}

/// The interface the kernel would send packets to `ip` through, hence the one replies
/// arrive on. A connected UDP socket makes the kernel pick a route without sending a
/// single packet; the chosen source address names the interface.
fn route_interface(ip: IpAddr) -> Result<String, KernelError> {
    if ip.is_loopback() {
        return Ok("lo".into());
    }
    let unspecified: IpAddr = match ip {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let no_route = |e: std::io::Error| KernelError::NoInterface(format!("no route to {ip}: {e}"));
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0)).map_err(no_route)?;
    socket.connect(SocketAddr::new(ip, 9)).map_err(no_route)?;
    let source = socket.local_addr().map_err(no_route)?.ip();
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| KernelError::NoInterface(format!("listing interfaces: {e}")))?;
    let mut owner = None;
    for ifa in addrs {
        let Some(addr) = ifa.address.as_ref().and_then(sockaddr_ip) else {
            continue;
        };
        if addr == ip {
            // One of this host's own addresses: the kernel delivers it over loopback.
            return Ok("lo".into());
        }
        if addr == source && owner.is_none() {
            owner = Some(ifa.interface_name.clone());
        }
    }
    owner.ok_or_else(|| {
        KernelError::NoInterface(format!(
            "no interface owns {source}, the source address for {ip}"
        ))
    })
}

fn sockaddr_ip(addr: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_origins_share_one_skb_attachment_on_lo() {
        let origins: Vec<SocketAddr> = vec![
            "127.0.0.1:8081".parse().unwrap(),
            "127.0.0.2:8082".parse().unwrap(),
            "[::1]:8083".parse().unwrap(),
        ];
        let plan = plan_attachments(&origins, &[], XdpAttachMode::Auto).unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert_eq!(plan[0].interface, "lo");
        assert_eq!(plan[0].modes, vec![XdpMode::Skb]);
    }

    #[test]
    fn explicit_interfaces_override_routes() {
        let origins: Vec<SocketAddr> = vec!["127.0.0.1:8081".parse().unwrap()];
        let plan =
            plan_attachments(&origins, &["eth9".into(), "lo".into()], XdpAttachMode::Auto).unwrap();
        let names: Vec<_> = plan.iter().map(|p| p.interface.as_str()).collect();
        assert_eq!(names, ["eth9", "lo"]);
        assert_eq!(
            plan[0].modes,
            vec![XdpMode::Skb],
            "auto never risks a link reset"
        );
        assert_eq!(plan[1].modes, vec![XdpMode::Skb]);
    }

    #[test]
    fn native_mode_never_falls_back_except_on_lo() {
        assert_eq!(
            modes_for("veth0", XdpAttachMode::Native),
            vec![XdpMode::Driver]
        );
        assert_eq!(modes_for("veth0", XdpAttachMode::Skb), vec![XdpMode::Skb]);
        assert_eq!(modes_for("lo", XdpAttachMode::Native), vec![XdpMode::Skb]);
    }
}
