//! The world every mechanism faces: the coprocessor population, the job stream, and "nature"
//! (whether a given coprocessor is on time and honest on a given job).
//!
//! Nature is a hash of `(seed, job, coprocessor, tag)`, not a draw from a shared generator, so
//! the market runs and the baselines see exactly the same luck for the same pairing.

use agora_market::{result_hash, Outcome, Params};
use agora_types::{Amount, Hash};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::scenario::{Jobs, Population};

/// One simulated coprocessor's private characteristics.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub index: u32,
    pub honest: bool,
    pub stake: u128,
    pub capacity: u32,
    /// Cost per work unit.
    pub cost: f64,
    /// Work units per block per slot.
    pub speed: f64,
    pub reliability: f64,
    pub lie_rate: f64,
    /// Block at which it stakes (0: at the first block).
    pub joins_at: u64,
}

/// One job as the client wants it.
impl Profile {
    /// One coprocessor drawn from the population's ranges (in a fixed order, so a seed gives
    /// the same population).
    fn draw(
        rng: &mut ChaCha8Rng,
        pop: &Population,
        params: &Params,
        index: u32,
        honest: bool,
        joins_at: u64,
    ) -> Profile {
        let min_stake = params.min_stake.0 as f64;
        Profile {
            index,
            honest,
            stake: (uniform(rng, pop.stake_min, pop.stake_max) * min_stake).round() as u128,
            capacity: rng
                .random_range(pop.capacity_min..=pop.capacity_max)
                .min(params.max_capacity),
            cost: uniform(rng, pop.cost_min, pop.cost_max),
            speed: uniform(rng, pop.speed_min, pop.speed_max),
            reliability: uniform(rng, pop.reliability_min, pop.reliability_max),
            lie_rate: if honest { 0.0 } else { pop.lie_rate },
            joins_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct JobDraw {
    pub index: u32,
    pub block: u64,
    pub client: u32,
    pub size: f64,
    pub max_price: u128,
    pub replicas: u32,
    pub audit_bps: u32,
    pub deadline_blocks: u64,
    pub min_reputation_bps: u32,
}

/// Population and job stream of one variant.
#[derive(Clone, Debug)]
pub struct World {
    pub seed: u64,
    pub profiles: Vec<Profile>,
    pub jobs: Vec<JobDraw>,
    pub jobs_cfg: Jobs,
    pub population: Population,
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 50.0 {
        // Normal approximation for large means.
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        return (mean + z * mean.sqrt()).round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}

impl World {
    pub fn generate(
        seed: u64,
        pop: &Population,
        jobs: &Jobs,
        blocks: u64,
        params: &Params,
    ) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x706f_7075_6c61_7469);
        let n = pop.coprocessors;
        // Exactly round(share·n) liars, at deterministic but scattered positions.
        let liars = (pop.dishonest_share * n as f64).round() as u32;
        let mut order: Vec<u32> = (0..n).collect();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let dishonest: std::collections::BTreeSet<u32> =
            order.iter().take(liars as usize).copied().collect();
        let mut profiles: Vec<Profile> = (0..n)
            .map(|i| Profile::draw(&mut rng, pop, params, i, !dishonest.contains(&i), 0))
            .collect();
        // Newcomers come from their own stream, so adding them leaves everyone else as drawn.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_7763_6f6d_6572);
        let joins_at = pop.newcomer_block.max(1);
        for k in 0..pop.newcomers {
            profiles.push(Profile::draw(&mut rng, pop, params, n + k, true, joins_at));
        }

        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6a6f_6273_7472_6561);
        let total_w: f64 = jobs.replicas.iter().map(|(_, w)| *w).sum();
        let mut list = Vec::new();
        for block in 1..=blocks {
            let factor: f64 = jobs
                .spikes
                .iter()
                .filter(|s| block >= s.start && block < s.end)
                .map(|s| s.factor)
                .product();
            let arrivals = poisson(&mut rng, jobs.rate * factor);
            for _ in 0..arrivals {
                let size = (uniform(&mut rng, jobs.size_min.ln(), jobs.size_max.ln())).exp();
                let value = uniform(&mut rng, jobs.value_min, jobs.value_max);
                let mut pick = uniform(&mut rng, 0.0, total_w.max(f64::MIN_POSITIVE));
                let mut replicas = jobs.replicas[0].0;
                for (k, w) in &jobs.replicas {
                    if pick < *w {
                        replicas = *k;
                        break;
                    }
                    pick -= w;
                }
                let exec = (size / pop.speed_min).ceil() as u64;
                list.push(JobDraw {
                    index: list.len() as u32,
                    block,
                    client: rng.random_range(0..jobs.clients),
                    size,
                    max_price: ((size * value).round() as u128).max(1),
                    replicas: replicas.min(params.max_replicas),
                    audit_bps: (jobs.audit * 10_000.0).round() as u32,
                    deadline_blocks: exec + jobs.deadline_slack_blocks,
                    min_reputation_bps: (jobs.min_reputation * 10_000.0).round() as u32,
                });
            }
        }
        World {
            seed,
            profiles,
            jobs: list,
            jobs_cfg: jobs.clone(),
            population: pop.clone(),
        }
    }

    /// A uniform draw in `[0, 1)` fixed by `(seed, job, coprocessor, tag)`.
    pub fn nature(&self, job: u32, cop: u32, tag: &str) -> f64 {
        let mut b = Vec::with_capacity(24 + tag.len());
        b.extend_from_slice(&self.seed.to_le_bytes());
        b.extend_from_slice(&job.to_le_bytes());
        b.extend_from_slice(&cop.to_le_bytes());
        b.extend_from_slice(tag.as_bytes());
        let h = Hash::derive("agora/econ/nature", &b);
        let x = u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What this coprocessor does when awarded this job.
    pub fn behaviour(&self, job: u32, cop: u32) -> Behaviour {
        let p = &self.profiles[cop as usize];
        if self.nature(job, cop, "late") >= p.reliability {
            return Behaviour::Late;
        }
        if self.nature(job, cop, "lie") < p.lie_rate {
            return Behaviour::Lie;
        }
        Behaviour::Honest
    }

    /// Blocks a coprocessor needs for a job.
    pub fn exec_blocks(&self, job: u32, cop: u32) -> u64 {
        let size = self.jobs[job as usize].size;
        ((size / self.profiles[cop as usize].speed).ceil() as u64).max(1)
    }

    /// The correct result of a job.
    pub fn correct_hash(&self, job: u32) -> Hash {
        result_hash(Outcome::Success, 0, self.fuel_used(job), &job.to_le_bytes())
    }

    /// The hash a liar commits; colluding liars agree on it.
    pub fn wrong_hash(&self, job: u32, cop: u32) -> Hash {
        let who = if self.population.collude {
            u32::MAX
        } else {
            cop
        };
        let mut out = job.to_le_bytes().to_vec();
        out.extend_from_slice(&who.to_le_bytes());
        result_hash(Outcome::Success, 0, self.fuel_used(job), &out)
    }

    pub fn fuel_used(&self, job: u32) -> u64 {
        (self.jobs[job as usize].size * 1_000.0) as u64
    }

    /// The bidding agent's base price for a job: cost × size × margin.
    pub fn base_cost(&self, job: u32, cop: u32) -> Amount {
        let p = &self.profiles[cop as usize];
        let c = p.cost * self.jobs[job as usize].size * self.population.margin;
        Amount((c.round() as u128).max(1))
    }

    /// The cost a coprocessor bears for executing a job honestly.
    pub fn exec_cost(&self, job: u32, cop: u32) -> f64 {
        self.profiles[cop as usize].cost * self.jobs[job as usize].size
    }
}

/// What an awarded coprocessor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Executes and commits the correct result on time.
    Honest,
    /// Commits a wrong result at once, without executing.
    Lie,
    /// Never delivers (crash, overload): the slot times out.
    Late,
}
