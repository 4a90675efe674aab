//! The chat page: `GET /` and its assets, embedded in the binary from `web/` (plain HTML, CSS
//! and JavaScript modules; no build step, nothing fetched from elsewhere).
//!
//! `GET /` is the page with its asset URLs under `/assets/VERSION/`, where VERSION is a hash of
//! every asset: those URLs never change meaning, so they are cached for a year (`immutable`),
//! and a new binary's page names new URLs. The page itself is revalidated (`no-cache` with an
//! `ETag`). Everything is sent gzip-compressed when the client accepts it, compressed once on
//! first use. Every answer carries a strict Content-Security-Policy: scripts and styles from
//! this origin only (no inline script, no `eval`), connections to this origin only, no frames.

use std::io::Write;
use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;

/// The policy of every page answer. `connect-src 'self'` covers the same-origin WebSocket;
/// `img-src data:` allows the icons drawn inline in CSS.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The files of `web/`, with their content types.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/app.js"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/chat.js"),
    ),
    (
        "connection.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/connection.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/dom.js"),
    ),
    (
        "markdown.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/markdown.js"),
    ),
    (
        "library.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/library.js"),
    ),
    (
        "memories.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/memories.js"),
    ),
    (
        "question.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/question.js"),
    ),
    (
        "sidebar.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/sidebar.js"),
    ),
    (
        "status.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/status.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../web/icon.svg"),
    ),
];

const INDEX: &str = include_str!("../../web/index.html");

/// Where the page's asset URLs point: `INDEX` names them `{{assets}}/FILE`.
const ASSETS_MARK: &str = "{{assets}}";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{version}/{file}", get(asset))
        .route("/favicon.ico", get(favicon))
}

/// Browsers ask for it whatever the page says: the page's icon.
async fn favicon(headers: HeaderMap) -> Response {
    match site().assets.iter().find(|a| a.name == "icon.svg") {
        Some(icon) => serve(icon, &headers, "public, max-age=86400"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// One servable file, plain and gzipped.
struct Asset {
    name: String,
    content_type: &'static str,
    plain: Vec<u8>,
    gzipped: Vec<u8>,
    etag: String,
}

impl Asset {
    fn new(name: &str, content_type: &'static str, plain: Vec<u8>) -> Self {
        let etag = format!("\"{}\"", short_hash(&plain));
        let gzipped = gzip(&plain);
        Self {
            name: name.to_string(),
            content_type,
            plain,
            gzipped,
            etag,
        }
    }
}

/// The page and its assets, built once.
struct Site {
    version: String,
    index: Asset,
    assets: Vec<Asset>,
}

fn site() -> &'static Site {
    static SITE: OnceLock<Site> = OnceLock::new();
    SITE.get_or_init(|| {
        let mut all = Sha256::new();
        for (name, _, bytes) in FILES {
            all.update(name.as_bytes());
            all.update(bytes);
        }
        let version = hex(&all.finalize()[..6]);
        let index = INDEX.replace(ASSETS_MARK, &format!("/assets/{version}"));
        Site {
            index: Asset::new("index.html", "text/html; charset=utf-8", index.into_bytes()),
            assets: FILES
                .iter()
                .map(|(name, kind, bytes)| Asset::new(name, kind, bytes.to_vec()))
                .collect(),
            version,
        }
    })
}

async fn index(headers: HeaderMap) -> Response {
    serve(&site().index, &headers, "no-cache")
}

async fn asset(Path((version, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let site = site();
    let Some(asset) = site.assets.iter().find(|a| a.name == file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    // A page of an older binary may still ask for its version: it gets today's file, not
    // cached for long, rather than a broken page.
    let cache = if version == site.version {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    serve(asset, &headers, cache)
}

fn serve(asset: &Asset, request: &HeaderMap, cache: &'static str) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
    let gzip = accepts_gzip(request);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        asset.gzipped.clone().into_response()
    } else {
        asset.plain.clone().into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if gzip && !fresh {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        headers.insert(header::ETAG, etag);
    }
    secure(headers);
    response
}

/// The headers that keep the page to itself.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn short_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes)[..8])
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_by_version_and_every_file_exists() {
        let site = site();
        let page = String::from_utf8_lossy(&site.index.plain);
        assert!(!page.contains(ASSETS_MARK));
        assert!(page.contains(&format!("/assets/{}/app.js", site.version)));
        assert!(page.contains(&format!("/assets/{}/app.css", site.version)));
        for (name, _, _) in FILES {
            assert!(site.assets.iter().any(|a| a.name == *name));
        }
    }

    #[test]
    fn gzip_is_chosen_unless_refused() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, GZIP;q=0.5"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn no_inline_script_is_allowed() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
        let page = String::from_utf8_lossy(&site().index.plain).to_string();
        // Every script is a file: the page holds no inline code or handler attribute.
        assert!(!page.contains("<script>"));
        assert!(!page.contains(" onclick="));
    }
}
