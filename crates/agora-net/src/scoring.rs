//! Application-driven peer scoring: penalty points that decay, and timed bans.
//!
//! Pure bookkeeping with `now` passed in, so it is tested without sockets or clocks. The swarm
//! loop feeds it reports and acts on its verdicts (disconnect, block, unblock).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Why the application (or the network layer itself) penalises a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Penalty {
    /// A message that failed the application's checks (bad signature, wrong height, ...).
    Invalid,
    /// Bytes that do not decode.
    Malformed,
    /// A message over the size cap.
    Oversize,
    /// Something merely unhelpful (a stale or useless message, an unanswered request).
    Minor,
}

impl Penalty {
    /// Points added to the peer's score.
    pub const fn points(self) -> u32 {
        match self {
            Penalty::Invalid => 20,
            Penalty::Malformed => 20,
            Penalty::Oversize => 40,
            Penalty::Minor => 2,
        }
    }
}

/// Scoring parameters.
#[derive(Debug, Clone, Copy)]
pub struct ScoreConfig {
    /// A peer reaching this many points is banned.
    pub ban_threshold: u32,
    /// How long a ban lasts.
    pub ban_duration: Duration,
    /// One point is forgiven per this interval.
    pub decay_every: Duration,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            ban_threshold: 100,
            ban_duration: Duration::from_secs(300),
            decay_every: Duration::from_secs(1),
        }
    }
}

/// What a report led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Points recorded; the peer stays.
    Scored { points: u32 },
    /// The peer crossed the threshold and is now banned.
    Banned { points: u32 },
    /// The peer was already banned.
    AlreadyBanned,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    points: u32,
    last_decay: Instant,
}

/// Penalty points per peer and the ban list.
#[derive(Debug)]
pub struct Scores {
    cfg: ScoreConfig,
    points: BTreeMap<PeerId, Entry>,
    bans: BTreeMap<PeerId, Instant>,
}

impl Scores {
    pub fn new(cfg: ScoreConfig) -> Scores {
        Scores {
            cfg,
            points: BTreeMap::new(),
            bans: BTreeMap::new(),
        }
    }

    /// Record a penalty at `now`.
    pub fn report(&mut self, peer: PeerId, penalty: Penalty, now: Instant) -> Verdict {
        if self.is_banned(&peer, now) {
            return Verdict::AlreadyBanned;
        }
        let entry = self.points.entry(peer).or_insert(Entry {
            points: 0,
            last_decay: now,
        });
        decay(entry, self.cfg.decay_every, now);
        entry.points = entry.points.saturating_add(penalty.points());
        let points = entry.points;
        if points >= self.cfg.ban_threshold {
            self.ban(peer, now);
            Verdict::Banned { points }
        } else {
            Verdict::Scored { points }
        }
    }

    /// Ban `peer` from `now` for the configured duration (also used for a genesis mismatch).
    pub fn ban(&mut self, peer: PeerId, now: Instant) {
        self.points.remove(&peer);
        self.bans.insert(peer, now + self.cfg.ban_duration);
    }

    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.bans.get(peer).is_some_and(|until| *until > now)
    }

    /// Current points of `peer` (after decay).
    pub fn points(&mut self, peer: &PeerId, now: Instant) -> u32 {
        match self.points.get_mut(peer) {
            Some(e) => {
                decay(e, self.cfg.decay_every, now);
                e.points
            }
            None => 0,
        }
    }

    /// Decay every score, forget peers at zero, and return the bans that expired.
    pub fn tick(&mut self, now: Instant) -> Vec<PeerId> {
        let every = self.cfg.decay_every;
        self.points.retain(|_, e| {
            decay(e, every, now);
            e.points > 0
        });
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &expired {
            self.bans.remove(p);
        }
        expired
    }
}

fn decay(e: &mut Entry, every: Duration, now: Instant) {
    let every_ms = every.as_millis().max(1);
    let elapsed = now.saturating_duration_since(e.last_decay).as_millis();
    let steps = elapsed / every_ms;
    if steps > 0 {
        let steps32 = u32::try_from(steps).unwrap_or(u32::MAX);
        e.points = e.points.saturating_sub(steps32);
        let advanced = u64::try_from(steps.saturating_mul(every_ms)).unwrap_or(u64::MAX);
        e.last_decay += Duration::from_millis(advanced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScoreConfig {
        ScoreConfig {
            ban_threshold: 100,
            ban_duration: Duration::from_secs(10),
            decay_every: Duration::from_secs(1),
        }
    }

    #[test]
    fn repeated_offences_ban_and_bans_expire() {
        let mut s = Scores::new(cfg());
        let p = PeerId::random();
        let t0 = Instant::now();
        assert_eq!(
            s.report(p, Penalty::Invalid, t0),
            Verdict::Scored { points: 20 }
        );
        for _ in 0..3 {
            s.report(p, Penalty::Invalid, t0);
        }
        assert_eq!(
            s.report(p, Penalty::Invalid, t0),
            Verdict::Banned { points: 100 }
        );
        assert!(s.is_banned(&p, t0));
        assert_eq!(s.report(p, Penalty::Invalid, t0), Verdict::AlreadyBanned);
        assert!(s.tick(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(s.tick(t0 + Duration::from_secs(10)), vec![p]);
        assert!(!s.is_banned(&p, t0 + Duration::from_secs(10)));
        assert_eq!(s.points(&p, t0 + Duration::from_secs(10)), 0);
    }

    #[test]
    fn points_decay_over_time() {
        let mut s = Scores::new(cfg());
        let p = PeerId::random();
        let t0 = Instant::now();
        s.report(p, Penalty::Oversize, t0);
        assert_eq!(s.points(&p, t0 + Duration::from_millis(2500)), 38);
        // A slow trickle of minor faults never reaches a ban.
        let mut t = t0;
        for _ in 0..200 {
            t += Duration::from_secs(3);
            assert!(matches!(
                s.report(p, Penalty::Minor, t),
                Verdict::Scored { .. }
            ));
        }
        s.tick(t + Duration::from_secs(1000));
        assert_eq!(s.points(&p, t + Duration::from_secs(1000)), 0);
    }
}
