//! The live toxic chain of one direction of one connection.
//!
//! A chain is rebuilt from the proxy's current toxic list whenever that list changes;
//! stages of toxics that are still there keep their state (bytes counted, toxicity
//! decided), new toxics get a new stage, removed ones are told so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use super::Installed;
use crate::faults::seed::DecisionKey;
use crate::faults::toxics::{self, Draws, Event, Joining, RequestDraws, Stage, Timed};

/// Who the connection is, for seeding decisions.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionId {
    /// The server seed.
    pub seed: u64,
    /// The proxy's name.
    pub proxy: Arc<str>,
    /// The connection's ordinal on its proxy.
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
    slots: Vec<Slot>,
    /// Whether bytes have passed this direction, so a new stage joins mid-stream.
    carried: bool,
}

impl Chain {
    /// An empty chain for the connection `id`.
    pub(crate) fn new(id: ConnectionId) -> Self {
        Self { id, slots: Vec::new(), carried: false }
    }

    /// Whether no stage acts on this connection (the link may take its fast path).
    pub(crate) fn is_idle(&self) -> bool {
        self.slots.iter().all(|s| s.stage.is_none())
    }

    /// Notes that bytes passed this direction.
    pub(crate) fn note_traffic(&mut self) {
        self.carried = true;
    }

    /// Whether the toxic `uid` is still in the chain.
    pub(crate) fn has(&self, uid: u64) -> bool {
        self.slots.iter().any(|s| s.uid == uid)
    }

    /// Makes the chain follow `spec`; what removed stages emit goes to `out`. Returns
    /// whether any toxic was removed or replaced.
    pub(crate) fn rebuild(&mut self, spec: &[Installed], now: Instant, out: &mut Vec<Timed>) -> bool {
        let mut old: HashMap<u64, Slot> = self.slots.drain(..).map(|s| (s.uid, s)).collect();
        for installed in spec {
            let slot = old.remove(&installed.uid).unwrap_or_else(|| self.new_slot(installed, now));
            self.slots.push(slot);
        }
        let removed = !old.is_empty();
        for slot in old.into_values() {
            if let Some(mut stage) = slot.stage {
                stage.on_removed(now, out);
            }
        }
        removed
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
        // An HTTP toxic draws its toxicity per request, not per connection.
        let acts = toxic.kind.is_http() || rng.random::<f32>() < toxic.toxicity;
        let requests = RequestDraws::new(
            self.id.seed,
            self.id.proxy.clone(),
            toxic.name.as_str().into(),
            installed.revision,
            toxic.toxicity,
            installed.occurrences.clone(),
        );
        Slot {
            uid: installed.uid,
            stage: acts.then(|| {
                let joining = if self.carried { Joining::MidStream } else { Joining::AtStart };
                toxics::stage(&toxic.kind, Draws { connection: rng, requests }, now, joining, installed.uid)
            }),
            last_out: None,
        }
    }

    /// Runs an event read from the socket through the chain.
    pub(crate) fn push(&mut self, input: Timed, out: &mut Vec<Timed>) {
        self.run_from(0, vec![input], out);
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
        out.extend(events);
    }
}
