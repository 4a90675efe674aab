//! Server-sent events, as much as a chat completion stream needs: the `data` of each event.
//! The other fields (`event`, `id`, `retry`) and comments are read and dropped.
//!
//! Lines are parsed in place from the bytes as they arrive: no string per line, per field or
//! per event (the data of an event is gathered in one buffer that is reused). This runs for
//! every chunk of every streamed answer; the general-purpose parser it replaced
//! (`eventsource-stream`) made about six allocations per chunk and copied the rest of its
//! buffer once per line.
//!
//! As the HTML standard says: lines end in CRLF, LF or CR; a blank line dispatches the event;
//! `data` lines are joined with LF; one space after the colon is dropped; an event with no
//! data is not dispatched; a byte-order mark at the very start is skipped; an event that the
//! body ends before its blank line is dropped. Unlike a browser, data that is not UTF-8 is an
//! error (a model's text must arrive intact), and so is an event past [`MAX_EVENT_BYTES`]
//! (a stream that never ends an event cannot grow memory).

use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::pin::Pin;

use super::bounded::{MAX_EVENT_BYTES, ReadFault};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The events of a response body.
pub struct EventReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    decoder: SseDecoder,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self::from_stream(response.bytes_stream())
    }

    fn from_stream(body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static) -> Self {
        Self {
            body: Box::pin(body),
            decoder: SseDecoder::default(),
        }
    }

    /// The data of the next event; `None` once the body has ended.
    pub async fn next(&mut self) -> Option<Result<&str, ReadFault>> {
        loop {
            match self.decoder.next_event() {
                Ok(true) => return Some(Ok(self.decoder.data())),
                Ok(false) => {}
                Err(fault) => return Some(Err(fault)),
            }
            match self.body.next().await? {
                Ok(bytes) => self.decoder.push(&bytes),
                Err(error) => return Some(Err(ReadFault::Transport(error))),
            }
        }
    }
}

/// The parser behind `EventReader`: bytes in with [`SseDecoder::push`], events out with
/// [`SseDecoder::next_event`] and [`SseDecoder::data`].
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes received; those before `read` are parsed.
    buffer: Vec<u8>,
    read: usize,
    /// Bytes after `read` already searched for a line end (none found): a line that arrives a
    /// byte at a time is searched once, not once per byte.
    searched: usize,
    /// The data of the event being read (each `data` line followed by LF).
    data: String,
    /// `data` holds a dispatched event, to be cleared before the next line.
    dispatched: bool,
    /// The last line ended in CR: an LF first thing next belongs to it.
    after_cr: bool,
    /// Past the byte-order mark (or its absence).
    started: bool,
    /// Bytes of the event being read, in lines already parsed.
    event_bytes: usize,
}

impl SseDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read == self.buffer.len() {
            self.buffer.clear();
            self.read = 0;
        } else if self.read > self.buffer.len() / 2 {
            self.buffer.drain(..self.read);
            self.read = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Parses the complete lines received; `Ok(true)` when an event is ready in
    /// [`SseDecoder::data`] (the next call moves on).
    pub fn next_event(&mut self) -> Result<bool, ReadFault> {
        if self.dispatched {
            self.data.clear();
            self.dispatched = false;
        }
        if !self.started {
            let rest = &self.buffer[self.read..];
            if rest.len() < BOM.len() && BOM.starts_with(rest) {
                return Ok(false);
            }
            if rest.starts_with(BOM) {
                self.read += BOM.len();
            }
            self.started = true;
        }
        while let Some((line, next)) = self.line() {
            self.read = next;
            if line.is_empty() {
                self.event_bytes = 0;
                if !self.data.is_empty() {
                    self.data.pop(); // the LF after the last data line
                    self.dispatched = true;
                    return Ok(true);
                }
                continue;
            }
            self.event_bytes += next - line.start;
            if let Some(value) = data_value(&self.buffer[line]) {
                let value = std::str::from_utf8(value).map_err(|_| ReadFault::NotUtf8)?;
                self.data.push_str(value);
                self.data.push('\n');
            }
        }
        if self.event_bytes + (self.buffer.len() - self.read) > MAX_EVENT_BYTES {
            return Err(ReadFault::EventTooLarge);
        }
        Ok(false)
    }

    /// The data of the event [`SseDecoder::next_event`] said is ready.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// The next complete line (its range, without the line end) and where the one after
    /// starts.
    fn line(&mut self) -> Option<(std::ops::Range<usize>, usize)> {
        if self.after_cr {
            match self.buffer.get(self.read) {
                None => return None,
                Some(b'\n') => self.read += 1,
                Some(_) => {}
            }
            self.after_cr = false;
        }
        let rest = &self.buffer[self.read..];
        let Some(found) = rest[self.searched..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        else {
            self.searched = rest.len();
            return None;
        };
        let end = self.searched + found;
        self.searched = 0;
        self.after_cr = rest[end] == b'\r';
        let start = self.read;
        Some((start..start + end, start + end + 1))
    }
}

/// The value of a `data` field line; `None` for any other field or a comment.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let value = line.strip_prefix(b"data")?;
    match value.split_first() {
        None => Some(value),
        Some((b':', value)) => Some(value.strip_prefix(b" ").unwrap_or(value)),
        Some(_) => None, // another field whose name starts with "data"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event's data from `chunks` fed one after another, or the fault.
    fn events(chunks: &[&[u8]]) -> Result<Vec<String>, String> {
        let mut decoder = SseDecoder::default();
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            while decoder.next_event().map_err(|f| f.to_string())? {
                out.push(decoder.data().to_owned());
            }
        }
        Ok(out)
    }

    /// `text` split into chunks of `size` bytes.
    fn split(text: &[u8], size: usize) -> Vec<&[u8]> {
        text.chunks(size).collect()
    }

    #[test]
    fn data_lines_make_events_whatever_the_chunking_and_line_ends() {
        let stream = "\u{feff}: keep-alive comment\nevent: delta\nid: 7\nretry: 10\n\
                      data: {\"a\":1}\n\ndata:x\r\ndata: y\r\n\r\ndata\rdata:  two spaces\r\r\
                      data: é✓\n\ndata: [DONE]\n\n";
        let expected = vec![
            "{\"a\":1}".to_owned(),
            "x\ny".to_owned(),
            "\n two spaces".to_owned(),
            "é✓".to_owned(),
            "[DONE]".to_owned(),
        ];
        for size in [1, 2, 3, 5, 7, stream.len()] {
            assert_eq!(
                events(&split(stream.as_bytes(), size)),
                Ok(expected.clone()),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn events_without_data_and_other_fields_are_not_dispatched() {
        assert_eq!(
            events(&[b"event: ping\n\n: comment\n\ndatum: no\n\n\n\n"]),
            Ok(vec![])
        );
        // An event the body ends before its blank line is dropped.
        assert_eq!(
            events(&[b"data: done\n\ndata: cut"]),
            Ok(vec!["done".to_owned()])
        );
    }

    #[test]
    fn a_cr_then_lf_in_the_next_chunk_is_one_line_end() {
        assert_eq!(
            events(&[b"data: a\r", b"\n", b"\r", b"\ndata: b\n\n"]),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        // A CRLF whole in one chunk, the blank line's LF in the next.
        assert_eq!(events(&[b"data: a\r\n", b"\n"]), Ok(vec!["a".to_owned()]));
    }

    #[test]
    fn data_that_is_not_utf8_is_an_error() {
        let fault = events(&[b"data: \xff\xfe\n\n"]).expect_err("not UTF-8");
        assert!(fault.contains("UTF-8"), "{fault}");
        // A character split across chunks is whole once its line is.
        assert_eq!(
            events(&[b"data: \xc3", b"\xa9\n\n"]),
            Ok(vec!["é".to_owned()])
        );
    }

    #[test]
    fn an_event_that_never_ends_is_cut_at_the_limit() {
        let line = format!("data: {}\n", "x".repeat(1000));
        let mut decoder = SseDecoder::default();
        let mut fault = None;
        for _ in 0..(MAX_EVENT_BYTES / line.len() + 2) {
            decoder.push(line.as_bytes());
            if let Err(f) = decoder.next_event() {
                fault = Some(f);
                break;
            }
        }
        assert!(matches!(fault, Some(ReadFault::EventTooLarge)));
        // Many events of that size in a row are fine: the count starts again at each one.
        let event = format!("{line}\n");
        let mut decoder = SseDecoder::default();
        for _ in 0..(2 * MAX_EVENT_BYTES / event.len()) {
            decoder.push(event.as_bytes());
            assert!(decoder.next_event().expect("within bounds"));
        }
    }

    #[test]
    fn a_partial_line_waits_for_the_rest() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"data: hel");
        assert!(!decoder.next_event().expect("no fault"));
        // The search for the line's end goes on from where it stopped, not from its start.
        assert_eq!(decoder.searched, 9);
        decoder.push(b"lo\n\n");
        assert!(decoder.next_event().expect("no fault"));
        assert_eq!(decoder.data(), "hello");
        assert!(!decoder.next_event().expect("no fault"));
    }

    #[tokio::test]
    async fn the_reader_yields_each_event_then_none() {
        let chunks: Vec<reqwest::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"data: one\n\nda")),
            Ok(Bytes::from_static(b"ta: two\n\n")),
        ];
        let mut reader = EventReader::from_stream(futures::stream::iter(chunks));
        assert_eq!(reader.next().await.and_then(Result::ok), Some("one"));
        assert_eq!(reader.next().await.and_then(Result::ok), Some("two"));
        assert!(reader.next().await.is_none());
    }
}
