//! The example application: a bank. Each node holds a balance and, on ticks, sends random
//! transfers (seeded ChaCha) to random peers, never going negative. Money is conserved,
//! so every consistent snapshot satisfies [`BankInvariant`]: the balances plus the money
//! in recorded channel messages equal the total. A transfer the stack gives back as
//! undeliverable (its receiver restarted) is refunded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use shutter_vclock::NodeId;

use crate::global::GlobalSnapshot;
use crate::process::{Context, Process, Undeliverable};
use crate::verify::Invariant;

/// Parameters of one bank node.
#[derive(Clone, Copy, Debug)]
pub struct BankConfig {
    /// Seed; combined with the node id so every node draws differently.
    pub seed: u64,
    /// Opening balance.
    pub initial: u64,
    /// Chance that a tick sends a transfer.
    pub transfer_probability: f64,
    /// Largest single transfer.
    pub max_transfer: u64,
}

impl Default for BankConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            initial: 1_000,
            transfer_probability: 0.5,
            max_transfer: 100,
        }
    }
}

/// The snapshotted state of one bank node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankState {
    /// Money held.
    pub balance: u64,
}

/// A transfer message: the amount, postcard-encoded.
pub fn encode_transfer(amount: u64) -> Vec<u8> {
    postcard::to_allocvec(&amount).expect("postcard encoding into a Vec cannot fail")
}

/// The amount of a transfer message, if it is one.
pub fn decode_transfer(payload: &[u8]) -> Option<u64> {
    postcard::from_bytes(payload).ok()
}

/// An operator command for [`Bank`]: transfer `amount` to `to` now.
pub fn transfer_command(to: NodeId, amount: u64) -> Vec<u8> {
    postcard::to_allocvec(&(to, amount)).expect("postcard encoding into a Vec cannot fail")
}

/// One bank node.
#[derive(Debug)]
pub struct Bank {
    cfg: BankConfig,
    balance: u64,
    rng: ChaCha8Rng,
    /// Messages that were not transfers (counted, never applied).
    rejected: u64,
    /// Transfers refunded because they will never arrive.
    refunded: u64,
}

impl Bank {
    /// A node `me` with the opening balance.
    pub fn new(me: NodeId, cfg: BankConfig) -> Self {
        let seed = cfg.seed ^ u64::from(me.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Self {
            cfg,
            balance: cfg.initial,
            rng: ChaCha8Rng::seed_from_u64(seed),
            rejected: 0,
            refunded: 0,
        }
    }

    /// Money held now.
    pub fn balance(&self) -> u64 {
        self.balance
    }

    /// Malformed messages ignored so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Transfers refunded so far (see [`Process::on_undeliverable`]).
    pub fn refunded(&self) -> u64 {
        self.refunded
    }

    /// Sends `amount` to `to` if the balance allows; returns whether it did.
    pub fn transfer(&mut self, ctx: &mut Context, to: NodeId, amount: u64) -> bool {
        if amount == 0 || amount > self.balance || to == ctx.me() {
            return false;
        }
        self.balance -= amount;
        ctx.send(to, encode_transfer(amount));
        true
    }
}

impl Process for Bank {
    type State = BankState;

    fn on_message(&mut self, _ctx: &mut Context, _from: NodeId, payload: &[u8]) {
        match decode_transfer(payload) {
            Some(amount) => self.balance = self.balance.saturating_add(amount),
            None => self.rejected += 1,
        }
    }

    /// A transfer that will never arrive is refunded (whether or not the receiver's
    /// previous life got it before it died: that life's money died with it).
    fn on_undeliverable(
        &mut self,
        _ctx: &mut Context,
        _to: NodeId,
        payload: &[u8],
        _why: Undeliverable,
    ) {
        if let Some(amount) = decode_transfer(payload) {
            self.balance = self.balance.saturating_add(amount);
            self.refunded += 1;
        }
    }

    /// A removed member's money, and the transfers that were on their way to it, are
    /// this node's now.
    fn on_inherit(
        &mut self,
        _ctx: &mut Context,
        _removed: NodeId,
        state: BankState,
        in_flight: &[(NodeId, Vec<u8>)],
    ) {
        let arriving: u64 = in_flight
            .iter()
            .filter_map(|(_, p)| decode_transfer(p))
            .fold(0, u64::saturating_add);
        self.balance = self
            .balance
            .saturating_add(state.balance)
            .saturating_add(arriving);
    }

    fn on_command(&mut self, ctx: &mut Context, command: &[u8]) {
        match postcard::from_bytes::<(NodeId, u64)>(command) {
            Ok((to, amount)) => {
                self.transfer(ctx, to, amount);
            }
            Err(_) => self.rejected += 1,
        }
    }

    fn on_tick(&mut self, ctx: &mut Context) {
        if self.balance == 0 || ctx.peers().is_empty() {
            return;
        }
        if !self
            .rng
            .random_bool(self.cfg.transfer_probability.clamp(0.0, 1.0))
        {
            return;
        }
        let amount = self
            .rng
            .random_range(1..=self.balance.min(self.cfg.max_transfer.max(1)));
        let to = ctx.peers()[self.rng.random_range(0..ctx.peers().len())];
        self.transfer(ctx, to, amount);
    }

    fn snapshot(&self) -> BankState {
        BankState {
            balance: self.balance,
        }
    }

    fn restore(&mut self, state: BankState) {
        self.balance = state.balance;
    }
}

/// Conservation of money: balances plus recorded in-flight transfers equal `total`.
#[derive(Clone, Copy, Debug)]
pub struct BankInvariant {
    /// The money in the system (nodes times the opening balance).
    pub total: u64,
}

impl Invariant for BankInvariant {
    fn name(&self) -> &str {
        "bank total"
    }

    fn check(&self, snap: &GlobalSnapshot) -> Result<(), String> {
        // u128: a damaged or hostile snapshot file may hold sums beyond u64.
        let mut balances = 0u128;
        for (node, bytes) in &snap.states {
            let s: BankState = postcard::from_bytes(bytes)
                .map_err(|e| format!("state of {node} is not a bank state: {e}"))?;
            balances += u128::from(s.balance);
        }
        let mut in_flight = 0u128;
        for ((from, to), msgs) in &snap.channels {
            for m in msgs {
                in_flight += u128::from(
                    decode_transfer(&m.payload)
                        .ok_or_else(|| format!("channel {from}->{to} holds a non-transfer"))?,
                );
            }
        }
        if balances + in_flight == u128::from(self.total) {
            Ok(())
        } else {
            Err(format!(
                "balances {balances} + in flight {in_flight} = {} != total {}",
                balances + in_flight,
                self.total
            ))
        }
    }
}
