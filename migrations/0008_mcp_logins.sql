-- OAuth logins to remote MCP servers (`mcp-platform mcp login NAME`), one per server name: the
-- authorization server's metadata and the client registered there (as JSON and columns), and
-- the tokens (rmcp's StoredCredentials as JSON; NULL until the code is exchanged). `url` is the
-- server's URL at login: a login for another URL is not used.
CREATE TABLE mcp_logins (
    server TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    metadata TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret TEXT,
    redirect_uri TEXT NOT NULL,
    credentials TEXT,
    updated_at INTEGER NOT NULL
) STRICT;
