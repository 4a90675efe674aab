//! The `Host` check (DNS rebinding). A web page on `evil.example` whose name is rebound to
//! 127.0.0.1 reaches this server as a same-origin request: no `Origin` header, but
//! `Host: evil.example`. So every request, before any handler or upgrade, must name a host this
//! server answers to: a loopback name, the bound address (bound to a wildcard address: this
//! machine's interface addresses and hostname), or one of `server.allowed_hosts`.

use crate::wire::ErrorCode;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::{HostPattern, split_authority};

/// The hosts this server answers to, resolved once at start.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// Loopback names, the bound address, and (on a wildcard bind) the machine's own.
    own: Vec<String>,
    configured: Vec<HostPattern>,
}

impl AllowedHosts {
    pub fn new(configured: &[String], bound: SocketAddr) -> Self {
        let mut own: Vec<String> = vec!["localhost".into()];
        if bound.ip().is_unspecified() {
            own.extend(machine_names());
        } else {
            own.push(bound.ip().to_string());
        }
        own.sort();
        own.dedup();
        Self {
            own,
            configured: configured
                .iter()
                .filter_map(|entry| HostPattern::parse(entry))
                .collect(),
        }
    }

    /// Whether an authority (`Host` header value) names this server.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(&authority.to_ascii_lowercase()) else {
            return false;
        };
        let host = host.strip_suffix('.').unwrap_or(&host);
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.own.iter().any(|name| name == host)
            || self.configured.iter().any(|p| p.matches(host, port))
    }
}

/// This machine's interface addresses and its hostname, for a server bound to `0.0.0.0`/`::`.
fn machine_names() -> Vec<String> {
    let mut names: Vec<String> = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.iter().map(|i| i.ip().to_string()).collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot list this machine's addresses for the Host check");
            Vec::new()
        }
    };
    let uname = rustix::system::uname();
    let hostname = uname.nodename().to_string_lossy().to_ascii_lowercase();
    if !hostname.is_empty() {
        names.push(hostname);
    }
    names
}

/// Refuses a request whose `Host` (or absolute-form authority) this server does not answer to,
/// and one with several `Host` headers (which of them a proxy or a handler reads is anyone's
/// guess; RFC 9112 says such a request is answered 400).
pub async fn check_host(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request
        .headers()
        .get_all(header::HOST)
        .iter()
        .nth(1)
        .is_some()
    {
        state.counters.host_refused();
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "the request has more than one Host header",
        )
        .into_response();
    }
    let header_host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("\u{0}"));
    let uri_host = request
        .uri()
        .authority()
        .map(axum::http::uri::Authority::as_str);
    let allowed = match (header_host, uri_host) {
        (None, None) => false,
        (header, uri) => {
            header.is_none_or(|h| state.allowed_hosts.allows(h))
                && uri.is_none_or(|u| state.allowed_hosts.allows(u))
        }
    };
    if allowed {
        return next.run(request).await;
    }
    state.counters.host_refused();
    let shown: String = header_host
        .or(uri_host)
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    tracing::debug!(host = %shown, path = %request.uri().path(), "refused a request for a foreign host");
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        ErrorCode::HostNotAllowed,
        format!(
            "host `{shown}` is not served here; add it to server.allowed_hosts if this server is \
             reached under that name"
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> AllowedHosts {
        AllowedHosts::new(&[], "127.0.0.1:8000".parse().expect("addr"))
    }

    #[test]
    fn loopback_names_pass_with_any_port() {
        let hosts = loopback();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8000",
            "localhost:1",
            "LOCALHOST",
            "localhost.",
            "[::1]:8000",
            "[::1]",
            "127.0.0.2:80",
        ] {
            assert!(hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn foreign_and_malformed_hosts_are_refused() {
        let hosts = loopback();
        for host in [
            "evil.example:8000",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            "user@localhost",
            "localhost:port",
            "[::1",
            "::1",
            "10.0.0.1",
        ] {
            assert!(!hosts.allows(host), "{host}");
        }
    }

    #[test]
    fn configured_names_ports_and_subdomains_pass() {
        let configured = [
            "chat.example.com".to_string(),
            "proxy.lan:8443".into(),
            "*.corp.example".into(),
        ];
        let hosts = AllowedHosts::new(&configured, "127.0.0.1:8000".parse().expect("addr"));
        assert!(hosts.allows("chat.example.com"));
        assert!(hosts.allows("chat.example.com:443"));
        assert!(hosts.allows("proxy.lan:8443"));
        assert!(!hosts.allows("proxy.lan:8444"));
        assert!(!hosts.allows("proxy.lan"));
        assert!(hosts.allows("a.corp.example"));
        assert!(hosts.allows("a.b.corp.example:1"));
        assert!(!hosts.allows("corp.example"));
        assert!(!hosts.allows("xcorp.example"));
    }

    #[test]
    fn a_specific_bind_allows_its_own_address() {
        let hosts = AllowedHosts::new(&[], "192.168.7.9:8000".parse().expect("addr"));
        assert!(hosts.allows("192.168.7.9:8000"));
        assert!(!hosts.allows("192.168.7.10:8000"));
    }

    #[test]
    fn a_wildcard_bind_allows_the_machines_addresses() {
        let hosts = AllowedHosts::new(&[], "0.0.0.0:8000".parse().expect("addr"));
        let interfaces = if_addrs::get_if_addrs().expect("interfaces");
        for interface in interfaces {
            let ip = interface.ip();
            let authority = match ip {
                IpAddr::V6(v6) => format!("[{v6}]:8000"),
                IpAddr::V4(v4) => format!("{v4}:8000"),
            };
            assert!(hosts.allows(&authority), "{authority}");
        }
        assert!(!hosts.allows("evil.example"));
    }
}
