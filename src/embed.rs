//! The server inside another program (a Tauri or other desktop app): start it with a config
//! built in code, on port 0 if you like, learn its address, stop it gracefully. The same
//! server as `mcp-platform serve`, in the host's tokio runtime.
//!
//! ```no_run
//! # async fn run() -> Result<(), mcp_platform::app::StartError> {
//! let mut config = mcp_platform::config::Config::default();
//! config.server.port = 0;
//! config.database.use_sqlite_file("/tmp/app-data/chat.db");
//! let server = mcp_platform::embed::Server::start(config).await?;
//! println!("chat at {}", server.url());
//! server.stop().await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, StartError, bind};
use crate::config::Config;

/// A running server; dropping it without [`Server::stop`] stops it too, without waiting.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Binds `config.server` (port 0 picks a free one), starts the server in the current tokio
    /// runtime and returns once it accepts connections. API keys come from the process
    /// environment, as for the binary.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        crate::app::check_exposure(&config)?;
        let listener = bind(&config.server).await?;
        let addr = listener.local_addr().map_err(StartError::Runtime)?;
        let app = App::start(config).await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it as SIGTERM would: turns finish (up to `server.shutdown_timeout`), sockets
    /// close, the database closes cleanly; returns when all of it is done.
    pub async fn stop(mut self) -> Result<(), StartError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| StartError::Runtime(std::io::Error::other(e)))?
                .map_err(StartError::Runtime),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
