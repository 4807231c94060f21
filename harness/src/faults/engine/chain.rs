//! The live toxic chain of one direction of one connection.
//!
//! A chain is rebuilt from the proxy's current toxic list whenever that list changes;
//! stages of toxics that are still there keep their state (bytes counted, toxicity
//! decided), new toxics get a new stage, removed ones are told so.
//!
//! While a TCP toxic that decides per request is on the chain (see
//! [`toxics::decides_per_request`]), or the other direction's are and this one carries
//! the requests, the chain marks where each HTTP/1.1 exchange begins ([`Boundaries`])
//! before its stages; otherwise bytes enter the stages as they were read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use super::boundaries::Boundaries;
use super::{ChainSpec, Installed};
use crate::faults::model::Stream;
use crate::faults::seed::DecisionKey;
use crate::faults::toxics::{self, Draws, EffectSink, Event, Joining, RequestDraws, Stage, Timed};

/// Who the connection is, for seeding decisions.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionId {
    /// The server seed.
    pub seed: u64,
    /// The proxy's name.
    pub proxy: Arc<str>,
    /// The connection's ordinal on its proxy, in accept order: the key of decisions on
    /// bytes that belong to no known HTTP request.
    pub ordinal: u64,
}

struct Slot {
    uid: u64,
    /// `None` when the toxicity draw left this connection untouched.
    stage: Option<Box<dyn Stage>>,
    last_out: Option<Instant>,
}

/// The toxic stages one link runs, in order.
pub(crate) struct Chain {
    id: ConnectionId,
    stream: Stream,
    slots: Vec<Slot>,
    /// Whether bytes have passed this direction, so a new stage joins mid-stream.
    carried: bool,
    /// Whether the first read of this direction began with an HTTP request line.
    looks_http: bool,
    /// Where exchanges begin, while a toxic here or on the other direction needs it.
    boundaries: Option<Boundaries>,
    /// Whether the other direction wants to know which requests were forwarded.
    tell_requests: bool,
    /// Where this direction's stages count the damage they do.
    effects: EffectSink,
}

impl Chain {
    /// An empty chain for the `stream` direction of the connection `id`, counting the
    /// damage its stages do in `effects`.
    pub(crate) fn new(id: ConnectionId, stream: Stream, effects: EffectSink) -> Self {
        Self {
            id,
            stream,
            slots: Vec::new(),
            carried: false,
            looks_http: false,
            boundaries: None,
            tell_requests: false,
            effects,
        }
    }

    /// Whether no stage acts on this connection (the link may take its fast path).
    pub(crate) fn is_idle(&self) -> bool {
        self.boundaries.is_none() && self.slots.iter().all(|s| s.stage.is_none())
    }

    /// Notes that bytes passed this direction; `read` is what was read, if known.
    pub(crate) fn note_traffic(&mut self, read: Option<&[u8]>) {
        if !self.carried && self.stream == Stream::Upstream {
            self.looks_http = read.is_some_and(toxics::begins_with_request_line);
        }
        self.carried = true;
    }

    /// The other direction forwarded a request (`HEAD` if `head`) with `digest`: its
    /// response is owed on this one.
    pub(crate) fn owe_response(&mut self, head: bool, digest: u64) {
        if let Some(boundaries) = self.boundaries.as_mut() {
            boundaries.owe(head, digest);
        }
    }

    /// Whether the toxic `uid` is still in the chain.
    pub(crate) fn has(&self, uid: u64) -> bool {
        self.slots.iter().any(|s| s.uid == uid)
    }

    /// Makes the chain follow `spec`; what removed stages emit goes to `out`. Returns
    /// whether any toxic was removed or replaced.
    pub(crate) fn rebuild(&mut self, spec: &ChainSpec, now: Instant, out: &mut Vec<Timed>) -> bool {
        let mut old: HashMap<u64, Slot> = self.slots.drain(..).map(|s| (s.uid, s)).collect();
        for installed in &spec.toxics {
            let slot = old.remove(&installed.uid).unwrap_or_else(|| self.new_slot(installed, now));
            self.slots.push(slot);
        }
        let removed = !old.is_empty();
        for slot in old.into_values() {
            if let Some(mut stage) = slot.stage {
                stage.on_removed(now, out);
            }
        }
        self.tell_requests = spec.tell_requests && self.stream == Stream::Upstream;
        let by_request = spec.toxics.iter().any(|i| toxics::decides_per_request(&i.toxic.kind, i.toxic.toxicity));
        self.mark_exchanges(by_request || self.tell_requests, now, out);
        removed
    }

    /// Starts or stops marking exchanges; bytes held for a head still arriving run
    /// through the chain when marking stops.
    fn mark_exchanges(&mut self, wanted: bool, now: Instant, out: &mut Vec<Timed>) {
        if wanted == self.boundaries.is_some() {
            return;
        }
        match self.boundaries.take() {
            Some(mut boundaries) => {
                let held = boundaries.take_pending();
                if !held.is_empty() {
                    self.run_from(0, vec![Timed::new(now, Event::Data(held))], out);
                }
            }
            None => {
                self.boundaries = Some(match self.stream {
                    Stream::Upstream => Boundaries::requests(!self.carried, self.looks_http),
                    Stream::Downstream => Boundaries::responses(),
                });
            }
        }
    }

    fn new_slot(&self, installed: &Installed, now: Instant) -> Slot {
        let toxic = &installed.toxic;
        let key = DecisionKey {
            seed: self.id.seed,
            proxy: &self.id.proxy,
            connection: self.id.ordinal,
            toxic: &toxic.name,
            revision: installed.revision,
        };
        let mut rng = key.rng();
        let requests = RequestDraws::new(
            self.id.seed,
            self.id.proxy.clone(),
            toxic.name.as_str().into(),
            installed.revision,
            toxic.toxicity,
            installed.occurrences.clone(),
        );
        if toxics::decides_per_request(&toxic.kind, toxic.toxicity) {
            let draws = Draws { connection: rng, requests, effects: self.effects.clone() };
            let stage = toxics::stage_by_request(&toxic.kind, draws, now, installed.uid);
            return Slot { uid: installed.uid, stage: Some(stage), last_out: None };
        }
        // An HTTP toxic draws its toxicity per request, not per connection.
        let acts = toxic.kind.is_http() || rng.random::<f32>() < toxic.toxicity;
        Slot {
            uid: installed.uid,
            stage: acts.then(|| {
                let joining = if self.carried { Joining::MidStream } else { Joining::AtStart };
                let draws = Draws { connection: rng, requests, effects: self.effects.clone() };
                toxics::stage(&toxic.kind, draws, now, joining, installed.uid)
            }),
            last_out: None,
        }
    }

    /// Runs an event read from the socket through the chain.
    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let events = match self.boundaries.as_mut() {
            Some(boundaries) => {
                let mut marked = Vec::new();
                boundaries.mark(input, &mut marked);
                marked
            }
            None => vec![input],
        };
        self.run_from(0, events, out);
    }

    /// The earliest instant a stage wants to act on its own.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| s.stage.as_ref().and_then(|st| st.deadline())).min()
    }

    /// Lets stages whose deadline has passed act; their events run through the rest.
    pub(crate) fn fire_deadlines(&mut self, now: Instant, out: &mut Vec<Timed>) {
        for i in 0..self.slots.len() {
            let Some(stage) = self.slots[i].stage.as_mut() else {
                continue;
            };
            if stage.deadline().is_some_and(|d| d <= now) {
                let mut events = Vec::new();
                stage.on_deadline(now, &mut events);
                self.run_from(i + 1, events, out);
            }
        }
    }

    fn run_from(&mut self, start: usize, mut events: Vec<Timed>, out: &mut Vec<Timed>) {
        // Only the last stage that answers requests knows which reach the server.
        let last_answering = self.slots.iter().rposition(|s| s.stage.as_ref().is_some_and(|st| st.answers()));
        for (i, slot) in self.slots.iter_mut().enumerate().skip(start) {
            let Some(stage) = slot.stage.as_mut() else {
                continue;
            };
            let marks_forwarded = last_answering == Some(i);
            let mut next = Vec::with_capacity(events.len());
            for event in events {
                match event.event {
                    Event::Data(_) | Event::Eof => stage.on_event(event, &mut next),
                    // An answering stage marks the requests it forwards itself.
                    Event::Request { .. } if stage.answers() => {}
                    Event::Request { digest, .. } => {
                        stage.on_exchange(Some(digest), event.at);
                        next.push(event);
                    }
                    Event::Response { digest } => {
                        stage.on_exchange(digest, event.at);
                        next.push(event);
                    }
                    _ => next.push(event),
                }
            }
            if stage.answers() && !marks_forwarded {
                next.retain(|e| !matches!(e.event, Event::Request { .. }));
            }
            // A stage never lets a later event overtake an earlier one.
            for event in &mut next {
                if let Some(last) = slot.last_out {
                    event.at = event.at.max(last);
                }
                slot.last_out = Some(event.at);
            }
            events = next;
        }
        // Marks are for the stages; the other direction hears of the requests forwarded
        // when it waits for their answers or decides by them.
        let tell = self.tell_requests || last_answering.is_some();
        events.retain(|e| match e.event {
            Event::Response { .. } => false,
            Event::Request { .. } => tell,
            _ => true,
        });
        out.extend(events);
    }
}
