//! The live channel (`GET /v1/events`, PROTOCOL.md "Live change
//! notifications"), written once for every host: the Server-Sent Events
//! parser, the pokes it yields, and the supervisor that keeps one
//! connection open, notices a silent one and reconnects with backoff.
//!
//! A host only opens the request and hands the bytes of its body to a
//! [`PokeSink`] ([`PokeChannel::listen`]): the browser with `fetch` and a
//! streamed body (so that the key travels in `Authorization`, as on every
//! other endpoint, never in a URL), the native client with reqwest. What a
//! poke makes the client do is decided by the scheduler
//! ([`super::scheduler`]).

use super::scheduler::{HostFuture, SchedulerHost};
use crate::env::Environment;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::future::Either;
use futures::StreamExt;
use serde::Deserialize;
use std::sync::Mutex;

/// The first reconnect delay (ms); it doubles up to [`RECONNECT_MAX_MS`],
/// each wait drawn at random below it (full jitter).
pub const RECONNECT_BASE_MS: u64 = 1_000;
/// The longest reconnect delay (ms).
pub const RECONNECT_MAX_MS: u64 = 30_000;
/// How long a connection may stay silent before its `ready` event (ms).
pub const READY_TIMEOUT_MS: u64 = 10_000;
/// Bytes of one event, at most: a longer one ends the connection.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// What the channel tells the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The channel is open; the branch's log was at `cursor` then.
    Up {
        /// The head of the branch's change log when the channel opened.
        cursor: u64,
    },
    /// The branch's change log moved to `cursor`.
    Poke {
        /// The new head of the log.
        cursor: u64,
    },
    /// The channel closed: pokes may be missed until it is up again.
    Down,
}

/// One event of the stream, as the server sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelEvent {
    /// `event: ready`: the subscription is live.
    Ready {
        /// The log's head.
        cursor: u64,
        /// How often the server sends a heartbeat.
        heartbeat_ms: u64,
    },
    /// `event: poke`.
    Poke {
        /// The log's new head.
        cursor: u64,
    },
    /// `event: ping`: the heartbeat.
    Ping,
}

/// How a connection of the channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEnd {
    /// The server ended the stream (its subscription's age limit, a
    /// shutdown): reconnect.
    Closed,
    /// The request failed or the stream broke.
    Failed(String),
    /// The server answered with a non-2xx status.
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its `Retry-After`, in ms.
        retry_after_ms: Option<u64>,
    },
}

/// A host's way to open the channel.
pub trait PokeChannel {
    /// Sends `GET /v1/events` with the terminal's credentials and feeds
    /// every chunk of the response body to `sink` until the body ends,
    /// fails, or `sink.feed` returns false; then says how it ended.
    /// Dropping the future must close the connection.
    fn listen<'a>(&'a self, sink: &'a PokeSink) -> HostFuture<'a, ChannelEnd>;
}

/// Where a host delivers the bytes of the stream: it parses them and
/// passes the events on.
#[derive(Debug)]
pub struct PokeSink {
    parser: Mutex<SseParser>,
    events: UnboundedSender<ChannelEvent>,
}

impl PokeSink {
    fn new(events: UnboundedSender<ChannelEvent>) -> Self {
        PokeSink {
            parser: Mutex::new(SseParser::default()),
            events,
        }
    }

    /// Takes the next bytes of the body. False: the stream is broken (an
    /// event over [`MAX_EVENT_BYTES`]) or nobody listens; stop reading.
    pub fn feed(&self, bytes: &[u8]) -> bool {
        let mut parser = self.parser.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(events) = parser.push(bytes) else {
            return false;
        };
        events
            .into_iter()
            .all(|e| self.events.unbounded_send(e).is_ok())
    }
}

/// An event of the stream grew over [`MAX_EVENT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event of the live channel is over {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLong;

/// A Server-Sent Events parser for the channel's three events. Unknown
/// events, comments and fields other than `event` and `data` are skipped.
/// A line ends at CRLF, LF or a lone CR, as the SSE format allows; a blank
/// line ends an event.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The line being read.
    line: Vec<u8>,
    /// The complete lines of the event being read.
    lines: Vec<Vec<u8>>,
    /// Bytes held by `lines`.
    held: usize,
    /// The last byte was a CR: a LF right after it ends no other line.
    after_cr: bool,
}

#[derive(Deserialize)]
struct CursorData {
    cursor: u64,
    #[serde(default)]
    heartbeat_ms: Option<u64>,
}

impl SseParser {
    /// Takes the next bytes; returns the events they complete, or `Err`
    /// when an event grows over [`MAX_EVENT_BYTES`].
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<ChannelEvent>, EventTooLong> {
        let mut out = Vec::new();
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\r' | b'\n' => {
                    let line = std::mem::take(&mut self.line);
                    if line.is_empty() {
                        if let Some(e) = parse_block(&self.lines) {
                            out.push(e);
                        }
                        self.lines.clear();
                        self.held = 0;
                    } else {
                        self.held += line.len();
                        self.lines.push(line);
                    }
                }
                _ => self.line.push(b),
            }
            if self.held + self.line.len() > MAX_EVENT_BYTES {
                return Err(EventTooLong);
            }
        }
        Ok(out)
    }
}

fn parse_block(lines: &[Vec<u8>]) -> Option<ChannelEvent> {
    let mut event = "message";
    let mut data = String::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?;
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value,
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {}
        }
    }
    match event {
        "ping" => Some(ChannelEvent::Ping),
        "ready" => {
            let d: CursorData = serde_json::from_str(&data).ok()?;
            Some(ChannelEvent::Ready {
                cursor: d.cursor,
                heartbeat_ms: d.heartbeat_ms.unwrap_or(15_000),
            })
        }
        "poke" => {
            let d: CursorData = serde_json::from_str(&data).ok()?;
            Some(ChannelEvent::Poke { cursor: d.cursor })
        }
        _ => None,
    }
}

/// Reconnect delays: exponential with full jitter, reset once a
/// connection was up.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    base_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// Delays from `base_ms` doubling up to `max_ms`.
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        Backoff {
            failures: 0,
            base_ms,
            max_ms,
        }
    }

    /// The ceiling of the next wait.
    pub fn ceiling(&self) -> u64 {
        let exp = self.failures.min(20);
        self.base_ms.saturating_mul(1 << exp).min(self.max_ms)
    }

    /// The next wait: random in `[ceiling/2, ceiling]` (so that a server
    /// restart is not met by every client at once, and no client retries
    /// in a tight loop), and the ceiling doubles.
    pub fn next(&mut self, random: u64) -> u64 {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        half + random % (ceiling - half + 1)
    }

    /// After a connection that came up: start again from the base.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Gives up on the short delays (a refused credential): the next waits
    /// are at the ceiling.
    pub fn exhaust(&mut self) {
        self.failures = 20;
    }
}

/// How long a live connection may stay silent: two heartbeats and a margin.
pub fn silence_limit_ms(heartbeat_ms: u64) -> u64 {
    heartbeat_ms.saturating_mul(2).saturating_add(5_000)
}

/// The delay before reconnecting after `end`.
pub fn reconnect_delay(backoff: &mut Backoff, end: &ChannelEnd, random: u64) -> u64 {
    match end {
        ChannelEnd::Refused {
            status: 401 | 403, ..
        } => {
            // A refused credential does not get better by asking often;
            // the polls report it in the status.
            backoff.exhaust();
            backoff.next(random)
        }
        ChannelEnd::Refused {
            retry_after_ms: Some(ms),
            ..
        } => backoff.next(random).max(*ms),
        _ => backoff.next(random),
    }
}

/// Keeps the channel open while `alive()`: forwards its pokes to
/// `signals`, sends [`Signal::Down`] when a live connection ends, closes a
/// connection that stays silent past [`silence_limit_ms`] (a dead peer),
/// and reconnects after [`reconnect_delay`] (at once when `kick` fires:
/// the network came back).
pub async fn supervise<C, H, E>(
    channel: &C,
    host: &H,
    env: &E,
    signals: UnboundedSender<Signal>,
    mut kick: UnboundedReceiver<()>,
    alive: impl Fn() -> bool,
) where
    C: PokeChannel,
    H: SchedulerHost,
    E: Environment,
{
    let mut backoff = Backoff::new(RECONNECT_BASE_MS, RECONNECT_MAX_MS);
    while alive() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let sink = PokeSink::new(tx);
        let mut listen = channel.listen(&sink);
        let mut up = false;
        let mut silence = READY_TIMEOUT_MS;
        let end = loop {
            let timer = host.sleep(silence);
            match futures::future::select(&mut listen, futures::future::select(rx.next(), timer))
                .await
            {
                Either::Left((end, _)) => {
                    // Events that arrived with the end still count.
                    while let Ok(e) = rx.try_recv() {
                        forward(e, &mut up, &mut silence, &mut backoff, &signals);
                    }
                    break end;
                }
                Either::Right((Either::Left((Some(e), _)), _)) => {
                    forward(e, &mut up, &mut silence, &mut backoff, &signals);
                }
                Either::Right((Either::Left((None, _)), _)) => {
                    break ChannelEnd::Failed("the stream's sink closed".into())
                }
                Either::Right((Either::Right(((), _)), _)) => {
                    break ChannelEnd::Failed(format!("no event for {silence} ms"))
                }
            }
            if !alive() {
                break ChannelEnd::Closed;
            }
        };
        drop(listen);
        if up {
            let _ = signals.unbounded_send(Signal::Down);
        }
        tracing::debug!(end = ?end, "live channel closed");
        if !alive() {
            break;
        }
        let delay = reconnect_delay(&mut backoff, &end, env.random_u64());
        match futures::future::select(kick.next(), host.sleep(delay)).await {
            Either::Left((Some(()), _)) => while kick.try_recv().is_ok() {},
            Either::Left((None, _)) | Either::Right(_) => {}
        }
    }
}

fn forward(
    e: ChannelEvent,
    up: &mut bool,
    silence: &mut u64,
    backoff: &mut Backoff,
    signals: &UnboundedSender<Signal>,
) {
    match e {
        ChannelEvent::Ready {
            cursor,
            heartbeat_ms,
        } => {
            *up = true;
            *silence = silence_limit_ms(heartbeat_ms);
            backoff.reset();
            let _ = signals.unbounded_send(Signal::Up { cursor });
        }
        ChannelEvent::Poke { cursor } if *up => {
            let _ = signals.unbounded_send(Signal::Poke { cursor });
        }
        ChannelEvent::Poke { .. } | ChannelEvent::Ping => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parser_reads_events_split_anywhere() {
        let wire = b": hello\n\nevent: ready\ndata: {\"cursor\":7,\"heartbeat_ms\":500}\n\n\
                     event: ping\ndata: {}\r\n\r\nevent: poke\ndata: {\"cursor\":9}\n\n\
                     event: other\ndata: x\n\nevent: poke\ndata: {\"cursor\":10}\n";
        for split in 0..wire.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&wire[..split]).unwrap();
            got.extend(p.push(&wire[split..]).unwrap());
            assert_eq!(
                got,
                vec![
                    ChannelEvent::Ready {
                        cursor: 7,
                        heartbeat_ms: 500
                    },
                    ChannelEvent::Ping,
                    ChannelEvent::Poke { cursor: 9 },
                ],
                "split at {split}; the last poke is not complete yet"
            );
        }
    }

    #[test]
    fn a_lone_cr_ends_a_line_and_a_crlf_split_between_chunks_is_one_ending() {
        let wire =
            b"event: ready\rdata: {\"cursor\":3}\r\revent: poke\r\ndata: {\"cursor\":4}\r\n\r\n\
                     : note\revent: poke\ndata: {\"cursor\":5}\n\r";
        let want = vec![
            ChannelEvent::Ready {
                cursor: 3,
                heartbeat_ms: 15_000,
            },
            ChannelEvent::Poke { cursor: 4 },
            ChannelEvent::Poke { cursor: 5 },
        ];
        for split in 0..wire.len() {
            let mut p = SseParser::default();
            let mut got = p.push(&wire[..split]).unwrap();
            got.extend(p.push(&wire[split..]).unwrap());
            assert_eq!(got, want, "split at {split}");
        }
        // One byte at a time.
        let mut p = SseParser::default();
        let got: Vec<ChannelEvent> = wire.iter().flat_map(|b| p.push(&[*b]).unwrap()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_endless_event_breaks_the_stream() {
        let mut p = SseParser::default();
        assert!(p.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).is_err());
        // Many short lines of one event count too.
        let mut p = SseParser::default();
        let line: &[u8] = b"data: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
        let many: Vec<u8> = line.repeat(2 * MAX_EVENT_BYTES / line.len());
        assert!(p.push(&many).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_resets() {
        let mut b = Backoff::new(1_000, 30_000);
        let mut ceilings = Vec::new();
        for i in 0..7u64 {
            let ceiling = b.ceiling();
            let wait = b.next(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!(
                (ceiling / 2..=ceiling).contains(&wait),
                "{wait} within half of {ceiling}"
            );
            ceilings.push(ceiling);
        }
        assert_eq!(
            ceilings,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(Backoff::new(1_000, 30_000).next(0), 500);
        assert_eq!(Backoff::new(1_000, 30_000).next(500), 1_000);
        b.reset();
        assert_eq!(b.ceiling(), 1_000);
    }

    #[test]
    fn a_refused_key_waits_longest_and_retry_after_is_honoured() {
        let mut b = Backoff::new(1_000, 30_000);
        let refused = ChannelEnd::Refused {
            status: 401,
            retry_after_ms: None,
        };
        assert!(reconnect_delay(&mut b, &refused, 0) >= 15_000);
        let mut b = Backoff::new(1_000, 30_000);
        let busy = ChannelEnd::Refused {
            status: 503,
            retry_after_ms: Some(7_000),
        };
        assert_eq!(reconnect_delay(&mut b, &busy, 0), 7_000);
    }
}
