//! Which hosts a `network` grant reaches, and which addresses a granted name may lead to.
//!
//! A pattern is one of:
//!
//! - `api.example.com`: that host only, on the scheme's default port only (80 for `http`,
//!   443 for `https`);
//! - `api.example.com:8080`: that host on port 8080 only (any scheme);
//! - `*.example.com` (with or without a port, as above): every name that ends in
//!   `.example.com` with at least one more label before it (`a.example.com`,
//!   `a.b.example.com`), but not `example.com` itself;
//! - an IP address, matched literally (`127.0.0.1:8080`, `[::1]:8080`); no name is resolved
//!   to decide whether a pattern matches, so `localhost` does not match `127.0.0.1`.
//!
//! Names compare case-insensitively, a trailing dot is ignored. `*` anywhere but as the whole
//! first label makes the pattern match nothing, and so does an empty pattern.
//!
//! A granted *name* must also lead somewhere public: when it resolves to a loopback,
//! link-local (the cloud metadata address 169.254.169.254 among them), private, shared,
//! unspecified or multicast address, the connection is refused, unless a pattern names that
//! address itself. Otherwise a grant for `updates.example.com` would reach whatever an
//! attacker who controls that name's DNS points it at, inside the user's network.

use std::net::IpAddr;

/// The hosts of one `network` capability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostScope {
    patterns: Vec<String>,
}

impl HostScope {
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> HostScope {
        HostScope {
            patterns: patterns
                .iter()
                .map(|p| p.as_ref().trim().to_owned())
                .collect(),
        }
    }

    pub fn union(&mut self, other: &HostScope) {
        for p in &other.patterns {
            if !self.patterns.contains(p) {
                self.patterns.push(p.clone());
            }
        }
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a request to `host` on `port` is covered; `default_port` is the port of the
    /// request's scheme. An empty scope allows nothing.
    pub fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        self.patterns
            .iter()
            .any(|p| host_pattern_matches(p, host, port, default_port))
    }

    /// Whether connecting to `address` (one that `host` resolved to) is allowed: any public
    /// address, and a non-public one only when a pattern names that very address and port.
    pub fn allows_address(&self, address: IpAddr, port: u16, default_port: u16) -> bool {
        if is_public(address) {
            return true;
        }
        let literal = match address {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        self.patterns
            .iter()
            .any(|p| host_pattern_matches(p, &literal, port, default_port))
    }

    /// The scope in words, for the install prompt.
    pub fn describe(&self) -> String {
        if self.patterns.is_empty() {
            return "no host".to_owned();
        }
        self.patterns.join(", ")
    }
}

/// Whether an address is reachable on the public internet, as opposed to this machine, its
/// local network, or a reserved range.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                // 100.64.0.0/10, carrier-grade NAT (shared address space).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // 192.0.0.0/24, IETF protocol assignments.
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                // 198.18.0.0/15, benchmarking.
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                // 240.0.0.0/4, reserved.
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7, unique local.
                || (s[0] & 0xfe00) == 0xfc00
                // fe80::/10, link-local.
                || (s[0] & 0xffc0) == 0xfe80
                // 2001:db8::/32, documentation.
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                // ::ffff:0:0/96 handled above; 64:ff9b::/96 (NAT64) may lead anywhere.
                || (s[0] == 0x0064 && s[1] == 0xff9b))
        }
    }
}

/// Whether `host:port` matches one pattern (see the module documentation).
pub fn host_pattern_matches(pattern: &str, host: &str, port: u16, default_port: u16) -> bool {
    let pattern = pattern.trim();
    let (pattern_host, pattern_port) = split_host_port(pattern);
    let wanted_port = match pattern_port {
        Some(Some(p)) => p,
        Some(None) => return false, // a port that is not a number
        None => default_port,
    };
    if port != wanted_port {
        return false;
    }
    let normalize = |h: &str| h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let pattern_host = normalize(pattern_host);
    let host = normalize(host);
    if pattern_host.is_empty() || host.is_empty() {
        return false;
    }
    if let Some(suffix) = pattern_host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return false;
        }
        return host
            .strip_suffix(suffix)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|labels| !labels.is_empty() && !labels.ends_with('.'));
    }
    !pattern_host.contains('*') && pattern_host == host
}

/// `host[:port]` or `[v6][:port]` → the host and, when there is a port, `Some(port)` (`None`
/// inside when it is not a valid port number).
fn split_host_port(s: &str) -> (&str, Option<Option<u16>>) {
    if s.starts_with('[') {
        return match s.find(']') {
            Some(end) => {
                let host = &s[..=end];
                match s[end + 1..].strip_prefix(':') {
                    Some(port) => (host, Some(port.parse().ok())),
                    None if end + 1 == s.len() => (host, None),
                    None => (host, Some(None)),
                }
            }
            None => (s, Some(None)),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().ok())),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_hosts() {
        let g = HostScope::from_patterns(&[
            "api.example.com",
            "*.example.org",
            "127.0.0.1:8080",
            "[::1]:9000",
            "*.internal:8443",
        ]);
        // A name without a port: the scheme's default port only.
        assert!(g.allows("api.example.com", 443, 443));
        assert!(g.allows("API.Example.com.", 80, 80));
        assert!(!g.allows("api.example.com", 8443, 443));
        assert!(!g.allows("api.example.com", 80, 443));
        assert!(!g.allows("example.com", 443, 443));
        assert!(!g.allows("api.example.com.evil.net", 443, 443));
        // Wildcards: one or more labels, not the bare domain.
        assert!(g.allows("a.example.org", 443, 443));
        assert!(g.allows("a.b.example.org", 443, 443));
        assert!(!g.allows("example.org", 443, 443));
        assert!(!g.allows("evilexample.org", 443, 443));
        assert!(!g.allows(".example.org", 443, 443));
        assert!(g.allows("db.internal", 8443, 443));
        assert!(!g.allows("db.internal", 443, 443));
        // Explicit ports, IP literals.
        assert!(g.allows("127.0.0.1", 8080, 80));
        assert!(!g.allows("127.0.0.1", 8081, 80));
        assert!(!g.allows("127.0.0.1", 80, 80));
        assert!(!g.allows("localhost", 8080, 80));
        assert!(g.allows("[::1]", 9000, 80));
        assert!(!g.allows("[::1]", 80, 80));

        for bad in ["*", "", "*.", "a.*.com", "api.example.com:http", "[::1"] {
            assert!(
                !host_pattern_matches(bad, "api.example.com", 443, 443),
                "{bad}"
            );
            assert!(!host_pattern_matches(bad, "a.com", 443, 443), "{bad}");
        }
        assert!(!HostScope::default().allows("example.com", 443, 443));
    }

    #[test]
    fn a_granted_name_must_lead_to_a_public_address() {
        let g = HostScope::from_patterns(&["updates.example.com", "127.0.0.1:8080"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(g.allows_address(ip("93.184.216.34"), 443, 443));
        assert!(g.allows_address(ip("2606:2800:220:1::1"), 443, 443));
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!g.allows_address(ip(private), 443, 443), "{private}");
        }
        // Named literally, with its port: allowed.
        assert!(g.allows_address(ip("127.0.0.1"), 8080, 80));
        assert!(!g.allows_address(ip("127.0.0.1"), 8081, 80));
    }
}
