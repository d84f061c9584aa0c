//! The token ring application: `K` numbered tokens travel along the channels of a
//! topology (on a one-way ring, around it). Nothing may create or destroy a token, so
//! every consistent snapshot holds each token exactly once: in some node's hand or on
//! some channel. That is the invariant [`every_token_once`] checks; a snapshot that
//! loses a message in flight, or records one that was already delivered, fails it.

use serde::{Deserialize, Serialize};
use shutter_sim::{Context, Cut, End, NodeId, Process, Undeliverable};

/// One node of the ring.
#[derive(Debug)]
pub(crate) struct TokenRing {
    held: Vec<u32>,
    passed: u64,
}

/// What a snapshot records of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RingState {
    /// Tokens in this node's hand.
    pub(crate) held: Vec<u32>,
    /// Tokens this node has passed on so far.
    pub(crate) passed: u64,
}

impl TokenRing {
    /// Node `me` of `nodes` nodes; tokens `0..tokens` start at nodes `t % nodes`.
    pub(crate) fn new(me: NodeId, nodes: u32, tokens: u32) -> TokenRing {
        TokenRing {
            held: (0..tokens).filter(|t| t % nodes == me.0).collect(),
            passed: 0,
        }
    }
}

/// A token on the wire: its number, little-endian.
fn decode(payload: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(payload.try_into().ok()?))
}

impl Process for TokenRing {
    type State = RingState;

    /// Every tick, each token in hand moves on to a neighbour (on a one-way ring, the
    /// next node; elsewhere the neighbours take turns).
    fn on_tick(&mut self, ctx: &mut Context) {
        if ctx.peers().is_empty() {
            return;
        }
        for token in std::mem::take(&mut self.held) {
            let next = ctx.peers()[(self.passed as usize + token as usize) % ctx.peers().len()];
            self.passed += 1;
            ctx.send(next, token.to_le_bytes().to_vec());
        }
    }

    fn on_message(&mut self, _ctx: &mut Context, _from: NodeId, payload: &[u8]) {
        // Only this application sends here (datagrams are authenticated), so anything
        // else would be a bug worth seeing in the invariant, not a thing to hide.
        if let Some(token) = decode(payload) {
            self.held.push(token);
        }
    }

    /// A token whose receiver restarted before taking it comes back.
    fn on_undeliverable(&mut self, _: &mut Context, _: NodeId, payload: &[u8], _: Undeliverable) {
        if let Some(token) = decode(payload) {
            self.held.push(token);
        }
    }

    fn snapshot(&self) -> RingState {
        RingState {
            held: self.held.clone(),
            passed: self.passed,
        }
    }

    fn restore(&mut self, state: RingState) {
        self.held = state.held;
        self.passed = state.passed;
    }
}

/// Every token `0..tokens` is in exactly one place: a node's hand or a channel.
pub(crate) fn every_token_once(tokens: u32) -> impl Fn(&Cut<'_, RingState>) -> Result<(), String> {
    move |cut| {
        let mut seen: Vec<u32> = cut.states().flat_map(|(_, s)| s.held.clone()).collect();
        for (from, to, payload) in cut.in_flight() {
            seen.push(decode(payload).ok_or(format!("{from} -> {to}: not a token"))?);
        }
        count(seen, tokens)
    }
}

/// At the end (nothing in flight), the nodes hold every token exactly once.
pub(crate) fn all_tokens_held(tokens: u32) -> impl Fn(&End<'_, TokenRing>) -> Result<(), String> {
    move |end| {
        count(
            end.processes().flat_map(|(_, p)| p.held.clone()).collect(),
            tokens,
        )
    }
}

fn count(mut seen: Vec<u32>, tokens: u32) -> Result<(), String> {
    seen.sort_unstable();
    let expected: Vec<u32> = (0..tokens).collect();
    if seen == expected {
        return Ok(());
    }
    let missing: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|t| !seen.contains(t))
        .collect();
    let mut twice = seen.clone();
    twice.dedup();
    let extra: Vec<u32> = twice
        .into_iter()
        .filter(|t| seen.iter().filter(|s| *s == t).count() > 1 || *t >= tokens)
        .collect();
    Err(format!(
        "tokens missing {missing:?}, duplicated or unknown {extra:?}"
    ))
}
