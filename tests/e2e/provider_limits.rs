//! A provider's replies are read within bounds: an SSE event that never ends is cut at its cap
//! instead of growing memory. (Error bodies are read up to 64 KiB and whole bodies up to 16 MiB
//! with or without `Content-Length`; their messages were short before too, so no test here
//! could tell the difference from outside.)

use mcp_platform::llm::ProviderError;
use mcp_platform::mock_provider::Reply;

use crate::support::{ask, collect, entry, fake, provider};

#[tokio::test]
async fn an_event_that_never_ends_is_cut_at_its_cap() {
    let fake = fake().await;
    // 3 MB of one `data:` line, never followed by the blank line that ends an event.
    let mut chunks = vec![b"data: {\"choices\":[{\"delta\":{\"content\":\"".to_vec()];
    chunks.extend((0..48).map(|_| vec![b'x'; 64 << 10]));
    let endless = Reply::RawChunks(chunks);
    fake.mock.push([endless.clone(), endless.clone(), endless]);
    let (events, error) = collect(&provider(&entry(&fake.base_url)), ask("hi"))
        .await
        .expect_err("cut");
    assert!(events.is_empty());
    assert!(matches!(error, ProviderError::Stream { .. }), "{error}");
    assert!(
        error.to_string().contains("larger than 1048576 bytes"),
        "{error}"
    );
}
