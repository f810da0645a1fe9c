//! The lab's network: the bridge `sb-br0` in the root namespace, one namespace and veth
//! pair per node, the check that 10.77.77.0/24 is free, and tear-down of everything named
//! with the `sb-` prefix. Reads state with `ip -j` (JSON) and changes only what differs.

use std::net::Ipv4Addr;

use serde::Deserialize;

use super::sys::ip;
use super::{LabError, BRIDGE, CONTROLLER_ADDR, PREFIX, SUBNET_BASE};

/// One interface as `ip -j addr show` reports it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Link {
    pub ifname: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub master: Option<String>,
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct AddrInfo {
    pub family: String,
    #[serde(default)]
    pub local: Option<String>,
    #[serde(default)]
    pub prefixlen: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Route {
    pub dst: String,
    #[serde(default)]
    pub dev: Option<String>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// The IPv4 addresses with prefix lengths.
    pub fn inet(&self) -> impl Iterator<Item = (Ipv4Addr, u8)> + '_ {
        self.addr_info.iter().filter_map(|a| {
            if a.family != "inet" {
                return None;
            }
            let addr = a.local.as_deref()?.parse::<Ipv4Addr>().ok()?;
            Some((addr, a.prefixlen?))
        })
    }

    pub fn has_addr(&self, addr: Ipv4Addr) -> bool {
        self.inet().any(|(a, len)| a == addr && len == PREFIX)
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, LabError> {
    serde_json::from_str(text).map_err(|e| LabError::Parse {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// The interfaces of the root namespace, or of `ns` when given.
pub(crate) fn links(ns: Option<&str>) -> Result<Vec<Link>, LabError> {
    let out = match ns {
        Some(ns) => ip(&["-n", ns, "-j", "addr", "show"])?,
        None => ip(&["-j", "addr", "show"])?,
    };
    parse_json(&out, "ip -j addr show")
}

/// The names of all network namespaces (`ip netns list`, without the `(id: N)` suffix).
pub(crate) fn namespaces() -> Result<Vec<String>, LabError> {
    Ok(parse_netns_list(&ip(&["netns", "list"])?))
}

pub(crate) fn parse_netns_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whether `addr/len` and 10.77.77.0/24 share any address.
fn overlaps(addr: Ipv4Addr, len: u8) -> bool {
    let m = len.min(PREFIX);
    if m == 0 {
        return true;
    }
    let mask = u32::MAX << (32 - u32::from(m));
    u32::from(addr) & mask == u32::from(SUBNET_BASE) & mask
}

fn parse_dst(dst: &str) -> Option<(Ipv4Addr, u8)> {
    match dst.split_once('/') {
        Some((a, l)) => Some((a.parse().ok()?, l.parse().ok()?)),
        None => Some((dst.parse().ok()?, 32)),
    }
}

/// Refuses when 10.77.77.0/24 is used by an interface that is not the lab's: an address in
/// it, or a route into it (or a route of /16 or narrower covering it) through another
/// device. Broad routes such as the default route or a 10.0.0.0/8 are fine.
pub(crate) fn check_subnet_free(links: &[Link], routes: &[Route]) -> Result<(), LabError> {
    let ours = |name: &str| name.starts_with("sb-");
    for link in links.iter().filter(|l| !ours(&l.ifname)) {
        for (addr, len) in link.inet() {
            if overlaps(addr, len) && len >= PREFIX {
                return Err(LabError::SubnetInUse {
                    by: format!("address {addr}/{len} on interface {}", link.ifname),
                });
            }
        }
    }
    for route in routes {
        let dev = route.dev.as_deref().unwrap_or("?");
        if ours(dev) {
            continue;
        }
        if let Some((addr, len)) = parse_dst(&route.dst) {
            if len >= 16 && overlaps(addr, len) {
                return Err(LabError::SubnetInUse {
                    by: format!("route {} via interface {dev}", route.dst),
                });
            }
        }
    }
    Ok(())
}

/// Checks the root namespace for a conflicting use of the lab's subnet.
pub(crate) fn ensure_subnet_free(links: &[Link]) -> Result<(), LabError> {
    let routes: Vec<Route> = parse_json(&ip(&["-4", "-j", "route", "show"])?, "ip -j route show")?;
    check_subnet_free(links, &routes)
}

fn find<'a>(links: &'a [Link], name: &str) -> Option<&'a Link> {
    links.iter().find(|l| l.ifname == name)
}

/// Creates the bridge with the controller's address, or fixes what is missing.
pub(crate) fn ensure_bridge(root: &[Link]) -> Result<(), LabError> {
    let ctl: Ipv4Addr = CONTROLLER_ADDR;
    let cidr = format!("{ctl}/{PREFIX}");
    let existing = find(root, BRIDGE);
    if existing.is_none() {
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    }
    if !existing.is_some_and(|l| l.has_addr(ctl)) {
        ip(&["addr", "add", &cidr, "dev", BRIDGE])?;
    }
    if !existing.is_some_and(Link::is_up) {
        ip(&["link", "set", BRIDGE, "up"])?;
    }
    Ok(())
}

/// Names tied to node `i`: namespace, host-side veth.
pub(crate) fn ns_name(i: usize) -> String {
    format!("sb-n{i}")
}

pub(crate) fn host_veth(i: usize) -> String {
    format!("sb-n{i}-h")
}

/// Node `i`'s address.
pub(crate) fn node_addr(i: usize) -> Ipv4Addr {
    let base = SUBNET_BASE.octets();
    // i is at most MAX_NODES (9), so 10 + i fits in a byte.
    Ipv4Addr::new(base[0], base[1], base[2], 10 + i as u8)
}

/// Makes node `i`'s namespace, veth pair, address and links right, changing only what
/// is missing or wrong. `namespaces` and `root` describe the current state.
pub(crate) fn ensure_node(i: usize, namespaces: &[String], root: &[Link]) -> Result<(), LabError> {
    let ns = ns_name(i);
    let host = host_veth(i);
    if !namespaces.contains(&ns) {
        ip(&["netns", "add", &ns])?;
    }
    let inner = links(Some(&ns))?;
    let host_link = find(root, &host);
    let eth0 = find(&inner, "eth0");
    if host_link.is_none() || eth0.is_none() {
        if host_link.is_some() {
            delete_link(None, &host)?;
        }
        if eth0.is_some() {
            delete_link(Some(&ns), "eth0")?;
        }
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
    }
    let fresh = host_link.is_none() || eth0.is_none();
    if fresh || host_link.and_then(|l| l.master.as_deref()) != Some(BRIDGE) {
        ip(&["link", "set", &host, "master", BRIDGE])?;
    }
    if fresh || !host_link.is_some_and(Link::is_up) {
        ip(&["link", "set", &host, "up"])?;
    }
    let addr = node_addr(i);
    if fresh || !eth0.is_some_and(|l| l.has_addr(addr)) {
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/{PREFIX}"),
            "dev",
            "eth0",
        ])?;
    }
    if fresh || !eth0.is_some_and(Link::is_up) {
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    }
    if !find(&inner, "lo").is_some_and(Link::is_up) {
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Deletes a link; one that vanished meanwhile (a veth whose peer namespace went away)
/// is not an error.
pub(crate) fn delete_link(ns: Option<&str>, name: &str) -> Result<(), LabError> {
    let result = match ns {
        Some(ns) => ip(&["-n", ns, "link", "del", name]),
        None => ip(&["link", "del", name]),
    };
    match result {
        Err(LabError::Command { message, .. }) if message.contains("Cannot find device") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Deletes a namespace; one that is already gone is not an error.
pub(crate) fn delete_namespace(ns: &str) -> Result<(), LabError> {
    match ip(&["netns", "del", ns]) {
        Err(LabError::Command { message, .. }) if message.contains("No such file") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The names of root-namespace links with the lab's `sb-` prefix.
pub(crate) fn lab_links() -> Result<Vec<String>, LabError> {
    Ok(links(None)?
        .into_iter()
        .map(|l| l.ifname)
        .filter(|n| n.starts_with("sb-"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, addrs: &[(&str, u8)]) -> Link {
        Link {
            ifname: name.into(),
            flags: vec!["UP".into()],
            master: None,
            addr_info: addrs
                .iter()
                .map(|(a, l)| AddrInfo {
                    family: "inet".into(),
                    local: Some((*a).into()),
                    prefixlen: Some(*l),
                })
                .collect(),
        }
    }

    fn route(dst: &str, dev: &str) -> Route {
        Route {
            dst: dst.into(),
            dev: Some(dev.into()),
        }
    }

    #[test]
    fn subnet_conflicts() {
        let eth = link("eth0", &[("192.0.2.2", 24)]);
        let br = link("sb-br0", &[("10.77.77.1", 24)]);
        let fine_routes = [
            route("default", "eth0"),
            route("10.0.0.0/8", "eth0"),
            route("10.77.77.0/24", "sb-br0"),
        ];
        check_subnet_free(&[eth.clone(), br.clone()], &fine_routes).unwrap();
        let err = check_subnet_free(&[eth.clone(), link("wg0", &[("10.77.77.9", 24)])], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.77.77.9/24 on interface wg0"), "{err}");
        assert!(err.contains("10.77.77.0/24"), "{err}");
        let err = check_subnet_free(std::slice::from_ref(&eth), &[route("10.77.0.0/16", "tun0")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("route 10.77.0.0/16 via interface tun0"),
            "{err}"
        );
        check_subnet_free(std::slice::from_ref(&eth), &[route("10.78.0.0/16", "tun0")]).unwrap();
        assert!(check_subnet_free(&[eth], &[route("10.77.77.200", "tun0")]).is_err());
    }

    #[test]
    fn parses_ip_json_and_netns_list() {
        let json = r#"[{"ifindex":8,"ifname":"sb-n1-h","flags":["BROADCAST","UP"],"master":"sb-br0","addr_info":[]},
            {"ifindex":2,"ifname":"eth0","flags":["BROADCAST"],"addr_info":[{"family":"inet","local":"10.77.77.11","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        let links: Vec<Link> = parse_json(json, "t").unwrap();
        assert!(links[0].is_up() && links[0].master.as_deref() == Some("sb-br0"));
        assert!(!links[1].is_up());
        assert!(links[1].has_addr(node_addr(1)));
        assert!(!links[1].has_addr(node_addr(2)));
        assert!(parse_json::<Vec<Link>>("nope", "ip")
            .unwrap_err()
            .to_string()
            .contains("ip"));
        assert_eq!(
            parse_netns_list("sb-n2 (id: 1)\nsb-n1\n"),
            ["sb-n2", "sb-n1"]
        );
        assert_eq!(node_addr(9), Ipv4Addr::new(10, 77, 77, 19));
    }
}
