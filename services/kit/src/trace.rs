//! W3C Trace Context (`traceparent`) and request ids, carried through a request's task.
//!
//! The server middleware parses an incoming `traceparent` (or starts a new trace) and
//! runs the handler inside [`scope`]; the resilient client reads [`current`] and sends a
//! child `traceparent` and the same `x-request-id` on every outgoing call, so one trace
//! id follows a request across every service it touches.

use std::fmt;
use std::future::Future;

use rand::RngCore;

/// Header carrying the request id, propagated unchanged to upstream calls.
pub const REQUEST_ID: &str = "x-request-id";
/// Header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// One hop's trace context: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// A new root trace with random ids.
    pub fn new_root() -> Self {
        let mut rng = crate::platform::rng();
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        // All-zero ids are invalid in the spec; retry until they are not.
        while trace_id == [0; 16] {
            rng.fill_bytes(&mut trace_id);
        }
        while span_id == [0; 8] {
            rng.fill_bytes(&mut span_id);
        }
        Self { trace_id, span_id, sampled: true }
    }

    /// The context to send to a callee: same trace, a new span id.
    pub fn child(&self) -> Self {
        let mut span_id = [0u8; 8];
        let mut rng = crate::platform::rng();
        while span_id == [0; 8] {
            rng.fill_bytes(&mut span_id);
        }
        Self { span_id, ..*self }
    }

    /// Parses a `traceparent` header value; `None` when it is not valid version-00 syntax.
    pub fn parse(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        // Version 00 has exactly four fields; later versions may append more.
        if parts[0] == "00" && parts.len() != 4 {
            return None;
        }
        let trace_id: [u8; 16] = decode_hex(parts[1])?.try_into().ok()?;
        let span_id: [u8; 8] = decode_hex(parts[2])?.try_into().ok()?;
        let flags = decode_hex(parts[3])?;
        if flags.len() != 1 || trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, sampled: flags[0] & 1 == 1 })
    }

    /// The trace id as 32 lowercase hex digits, as logs show it.
    pub fn trace_id_hex(&self) -> String {
        encode_hex(&self.trace_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", encode_hex(&self.trace_id), encode_hex(&self.span_id), u8::from(self.sampled))
    }
}

/// What a request carries through its task: its trace context and request id.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub trace: TraceContext,
    pub request_id: String,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Runs `fut` with `ctx` as the current request context.
pub async fn scope<F: Future>(ctx: RequestContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

/// The current request context, if the caller runs inside a request.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Headers to put on an outgoing call: a child `traceparent` and the request id.
/// Outside a request a fresh root trace is started so upstream logs still correlate.
pub fn outgoing_headers() -> [(&'static str, String); 2] {
    match current() {
        Some(ctx) => [(TRACEPARENT, ctx.trace.child().to_string()), (REQUEST_ID, ctx.request_id)],
        None => {
            [(TRACEPARENT, TraceContext::new_root().to_string()), (REQUEST_ID, crate::platform::uuid_v4().to_string())]
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(v).expect("valid");
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(ctx.sampled);
        assert_eq!(ctx.to_string(), v);
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn child_keeps_trace_and_changes_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
    }

    #[tokio::test]
    async fn outgoing_headers_follow_the_current_request() {
        let trace = TraceContext::new_root();
        let ctx = RequestContext { trace, request_id: "req-1".into() };
        let headers = scope(ctx, async { outgoing_headers() }).await;
        let sent = TraceContext::parse(&headers[0].1).unwrap();
        assert_eq!(sent.trace_id, trace.trace_id);
        assert_eq!(headers[1].1, "req-1");
    }
}
