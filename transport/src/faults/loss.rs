//! Loss decisions: Bernoulli and the Gilbert-Elliott two-state burst model.

use super::config::LossModel;

/// Per-link loss state (only Gilbert-Elliott has any: which state the chain is in).
#[derive(Clone, Debug, Default)]
pub(crate) struct LossState {
    /// True while the Gilbert-Elliott chain is in its bad (bursty) state.
    bad: bool,
}

impl LossState {
    /// Decides whether the next datagram is lost, then advances the chain.
    ///
    /// `u_loss` and `u_step` are independent uniform draws in `[0, 1)`; taking them as
    /// arguments keeps the number of draws per datagram fixed, so a link's random stream
    /// stays aligned whatever was decided.
    pub(crate) fn lose(&mut self, model: &LossModel, u_loss: f64, u_step: f64) -> bool {
        match *model {
            LossModel::None => false,
            LossModel::Bernoulli { p } => u_loss < p,
            LossModel::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_good,
                loss_in_bad,
            } => {
                let lost = u_loss < if self.bad { loss_in_bad } else { loss_in_good };
                let flip = if self.bad {
                    p_bad_to_good
                } else {
                    p_good_to_bad
                };
                if u_step < flip {
                    self.bad = !self.bad;
                }
                lost
            }
        }
    }
}
