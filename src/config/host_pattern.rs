//! `server.allowed_hosts` entries: a host name, `name:port`, or `*.domain`; parsed when the
//! configuration is validated and matched by the HTTP layer's Host check.

use std::net::IpAddr;

/// One entry of `server.allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `name`: any port.
    Name(String),
    /// `name:port`: that port only.
    NameAndPort(String, u16),
    /// `*.domain`: any subdomain of `domain` (not `domain` itself), any port.
    Subdomains(String),
}

impl HostPattern {
    /// Parses a configured entry; `None` if it is not a bare host (a scheme, a path, spaces).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        if let Some(domain) = text.strip_prefix("*.") {
            return is_host_name(domain).then(|| Self::Subdomains(domain.to_string()));
        }
        let (host, port) = split_authority(&text)?;
        if !is_host_name(&host) && host.parse::<IpAddr>().is_err() {
            return None;
        }
        Some(match port {
            Some(port) => Self::NameAndPort(host, port),
            None => Self::Name(host),
        })
    }

    /// Whether `host` (lowercase, no trailing dot) and `port` are what this entry names.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        match self {
            Self::Name(name) => name == host,
            Self::NameAndPort(name, wanted) => name == host && port == Some(*wanted),
            Self::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        }
    }
}

/// `host[:port]` or `[v6][:port]` → (host without brackets, port). `None` if malformed.
pub fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        ip.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((ip.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            Some((host.to_string(), Some(port.parse().ok()?)))
        }
        Some(_) => None,
        None => Some((authority.to_string(), None)),
    }
}

fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_refuse_schemes_and_paths() {
        assert_eq!(HostPattern::parse("https://x.example"), None);
        assert_eq!(HostPattern::parse("x.example/path"), None);
        assert_eq!(HostPattern::parse("*."), None);
        assert_eq!(
            HostPattern::parse("X.Example:80"),
            Some(HostPattern::NameAndPort("x.example".into(), 80))
        );
    }
}
