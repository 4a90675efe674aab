//! Our side of an MCP session: identifies us, and turns `notifications/tools/list_changed`
//! into a signal for the server's supervisor to list the tools again.

use std::sync::Arc;

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct HostClient {
    pub tools_changed: Arc<Notify>,
}

impl ClientHandler for HostClient {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = ClientCapabilities::default();
        info.client_info = Implementation::new("mcp-platform", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }
}
