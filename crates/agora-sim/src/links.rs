//! The simulated network both simulators send through: per-link latency, jitter (which
//! reorders), loss, duplication and a partition until the heal, plus nodes a test isolates.
//! Each simulator draws its own parameters from the seed; this decides, from the same RNG,
//! when (and whether, and how many times) one message arrives.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub(crate) struct Links {
    /// `latency[from][to]`, ms.
    pub latency: Vec<Vec<u64>>,
    /// Extra delay, uniform in `0..jitter` ms, per copy.
    pub jitter: u64,
    /// Loss and duplication probabilities before the heal.
    pub drop_p: f64,
    pub dup_p: f64,
    /// One side of a partition that holds until the heal.
    pub partition: Option<BTreeSet<usize>>,
    pub heal_at: u64,
    /// Nodes cut off from all others until taken out again (a rig's isolated nodes).
    pub isolated: BTreeSet<usize>,
    /// Copies scheduled so far.
    pub messages: u64,
}

impl Links {
    /// Whether the link between `a` and `b` is cut at `now`.
    pub fn cut(&self, now: u64, a: usize, b: usize) -> bool {
        if a != b && (self.isolated.contains(&a) || self.isolated.contains(&b)) {
            return true;
        }
        now < self.heal_at
            && self
                .partition
                .as_ref()
                .is_some_and(|side| side.contains(&a) != side.contains(&b))
    }

    /// The arrival times of a message sent from `from` to `to` at `now`: none if the link is
    /// cut or the message is lost, two if it is duplicated.
    pub fn arrivals(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: usize,
        to: usize,
    ) -> impl Iterator<Item = u64> {
        let mut at = [0u64; 2];
        let mut copies = 0;
        if from != to && !self.cut(now, from, to) {
            let chaos = now < self.heal_at;
            if !(chaos && self.drop_p > 0.0 && rng.random_bool(self.drop_p)) {
                copies = if chaos && self.dup_p > 0.0 && rng.random_bool(self.dup_p) {
                    2
                } else {
                    1
                };
                for slot in at.iter_mut().take(copies) {
                    let j = if self.jitter > 0 {
                        rng.random_range(0..self.jitter)
                    } else {
                        0
                    };
                    *slot = now + self.latency[from][to] + j;
                }
            }
        }
        self.messages += copies as u64;
        at.into_iter().take(copies)
    }
}
