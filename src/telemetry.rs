//! Logging: `tracing` to stderr, as text or one JSON object per line, filtered by `RUST_LOG`
//! when set, else by `logging.level`. Every line passes through `scrub::credentials` on its
//! way out, so a URL's user-info or a `?token=` in any message (ours, or an error text of a
//! dependency that names the URL it called) never reaches the log.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::scrub;

use crate::config::{LogFormat, LoggingConfig};

/// Caps rmcp's OAuth module at `info`, whatever `RUST_LOG` or `logging.level` say.
const NO_AUTH_DEBUG: &str = "rmcp::transport::auth=info";

/// Installs the global subscriber; a second call (tests) leaves the first in place.
pub fn init(config: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // rmcp's OAuth client logs the authorization code at debug: never shown.
        .add_directive(NO_AUTH_DEBUG.parse().unwrap_or_default());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _already_set = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// Stderr, with credentials hidden from each formatted event (written in one call).
struct ScrubbedStderr;

impl MakeWriter<'_> for ScrubbedStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&self) -> ScrubbedLine {
        ScrubbedLine
    }
}

struct ScrubbedLine;

impl Write for ScrubbedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub::credentials(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
