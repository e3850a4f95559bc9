//! Genesis and market parameters: a serde tree loadable from JSON or TOML.
//!
//! Amounts are written as decimal strings (or small integers) because TOML has no 128-bit
//! integers; fixed-point values as exact decimal strings (`"0.05"`).

use agora_types::{Address, Amount, Fixed, Hash, Timestamp};
use serde::{Deserialize, Serialize};

/// Serde for [`Amount`] as a decimal string, accepting integers too.
pub mod amount_text {
    use agora_types::Amount;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.0.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative integer or decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                v.trim().parse::<u128>().map(Amount).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(v as u128))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                u128::try_from(v)
                    .map(Amount)
                    .map_err(|_| E::custom("negative amount"))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Amount, E> {
                Ok(Amount(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every tunable of the market. Defaults suit a local testnet with ~1 s blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Minimum coprocessor stake to be active (bid).
    #[serde(with = "amount_text")]
    pub min_stake: Amount,
    /// Delay before unstaked collateral returns to the balance (block-time ms).
    pub unbonding_delay_ms: u64,
    /// Maximum declared capacity (concurrent jobs) per coprocessor.
    pub max_capacity: u32,
    /// Collateral locked per awarded slot, as basis points of the job's max price.
    pub collateral_bps: u32,

    /// GAS reputation: `f ← ω + β·f + α·(y − σ(f))`, clamped to `[f_min, f_max]`.
    pub gas_omega: Fixed,
    pub gas_alpha: Fixed,
    pub gas_beta: Fixed,
    /// Prior logit for newcomers.
    pub gas_f0: Fixed,
    pub gas_f_min: Fixed,
    pub gas_f_max: Fixed,

    /// Load curve `r(L) = base·(1 + κ·(L/C)^γ)`.
    pub load_kappa: Fixed,
    pub load_gamma: Fixed,
    /// Weight `w` of the load term `w·(u − ū)·V` subtracted from a bid's score (ADR 013).
    pub load_penalty_weight: Fixed,
    /// Time constant of the smoothed utilisation the load term balances (market ms); 0 uses the
    /// current load only.
    pub load_memory_ms: u64,

    /// Slashing factor `s` for a wrong result, basis points of the locked collateral.
    pub slash_bps: u32,
    /// Slashing factor for a missed deadline, basis points of the locked collateral.
    pub timeout_slash_bps: u32,
    /// Proven wrong results (strikes) that eject a coprocessor for good. The `n`-th unforgiven
    /// strike is slashed at `n · slash_bps` (capped at the collateral). 0 turns both off.
    pub max_strikes: u32,
    /// Accepted results that forgive one strike; 0 never forgives.
    pub strike_forgive: u32,
    /// Share of each slash paid to the job's client; the rest is burned.
    pub client_compensation_bps: u32,
    /// Share of each price paid to operators (by stake) as protocol fee.
    pub protocol_fee_bps: u32,
    /// Slash of an equivocating operator's stake, basis points (burned).
    pub evidence_slash_bps: u32,

    /// Default audit probability `q` for `k = 1`, basis points.
    pub audit_bps: u32,
    /// Audit fee escrowed per job (paid to auditors when an audit runs, else refunded).
    #[serde(with = "amount_text")]
    pub audit_fee: Amount,
    /// Time an auditor has to attest before the optimistic result stands (market ms).
    pub audit_window_ms: u64,

    /// Bounds on auction phases chosen by clients (market ms).
    pub min_auction_ms: u64,
    pub max_auction_ms: u64,
    /// Bond a sealed bidder escrows at commit; forfeited to the client if not revealed.
    #[serde(with = "amount_text")]
    pub reveal_bond: Amount,
    /// Bounds on a job's execution window (market ms).
    pub min_deadline_ms: u64,
    pub max_deadline_ms: u64,
    pub max_replicas: u32,
    /// How many times a job's slots may be re-auctioned (missed slots, unfilled auctions).
    pub max_reauctions: u32,
    /// Largest accepted max price per replica (keeps score arithmetic in range).
    #[serde(with = "amount_text")]
    pub max_price_limit: Amount,

    pub max_tx_bytes: u64,
    pub max_module_bytes: u64,
    pub max_input_bytes: u64,
    pub max_output_bytes: u64,
    pub max_args: u32,
    pub max_arg_bytes: u32,
    pub max_fuel: u64,
    pub max_memory_bytes: u64,
    /// Jobs not yet settled, refunded or failed, market-wide.
    pub max_open_jobs: u32,
    /// Decline reasons kept per job.
    pub max_declines_per_job: u32,
    pub max_decline_detail_bytes: u32,

    /// A gap between consecutive block timestamps above this is a stall.
    pub stall_gap_ms: u64,
    /// The most one block advances the market clocks (auction clocks, sealed phases,
    /// deadlines): the rest of a longer gap is frozen. A slow block therefore stretches every
    /// window instead of closing it, so a reveal or a result sent after the block that opened a
    /// window always has more blocks to land in.
    pub max_clock_step_ms: u64,
    /// A last commit signed by less than this share of voting power is low participation.
    pub low_participation_bps: u32,
    /// Healthy blocks in a row needed to leave the stalled mode.
    pub recovery_blocks: u32,
    /// Minimum interval between two liveness reports by one operator on one coprocessor.
    pub liveness_interval_ms: u64,
    /// Final jobs are dropped from replicated state this long after they close (the node
    /// keeps its own archive for the API).
    pub job_retention_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        let fx = |s: &str| s.parse::<Fixed>().expect("valid default");
        Params {
            min_stake: Amount(1_000),
            unbonding_delay_ms: 60_000,
            max_capacity: 64,
            collateral_bps: 10_000,
            gas_omega: fx("0"),
            gas_alpha: fx("0.5"),
            gas_beta: fx("0.98"),
            gas_f0: fx("1"),
            gas_f_min: fx("-8"),
            gas_f_max: fx("8"),
            load_kappa: fx("4"),
            load_gamma: fx("1"),
            load_penalty_weight: fx("1"),
            load_memory_ms: 10_000,
            slash_bps: 5_000,
            timeout_slash_bps: 1_000,
            max_strikes: 2,
            strike_forgive: 20,
            client_compensation_bps: 5_000,
            protocol_fee_bps: 500,
            evidence_slash_bps: 1_000,
            audit_bps: 1_000,
            audit_fee: Amount(10),
            audit_window_ms: 30_000,
            min_auction_ms: 1_000,
            max_auction_ms: 600_000,
            reveal_bond: Amount(5),
            min_deadline_ms: 1_000,
            max_deadline_ms: 3_600_000,
            max_replicas: 5,
            max_reauctions: 3,
            max_price_limit: Amount(u64::MAX as u128),
            max_tx_bytes: 16 * 1024,
            max_module_bytes: 16 * 1024 * 1024,
            max_input_bytes: 4 * 1024 * 1024,
            max_output_bytes: 4 * 1024 * 1024,
            max_args: 32,
            max_arg_bytes: 1024,
            max_fuel: 10_000_000_000,
            max_memory_bytes: 1 << 30,
            max_open_jobs: 10_000,
            max_declines_per_job: 32,
            max_decline_detail_bytes: 256,
            stall_gap_ms: 10_000,
            max_clock_step_ms: 1_500,
            low_participation_bps: 6_667,
            recovery_blocks: 3,
            liveness_interval_ms: 60_000,
            job_retention_ms: 86_400_000,
        }
    }
}

/// Why a genesis document is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis has no operators")]
    NoOperators,
    #[error("duplicate address {0} in genesis")]
    Duplicate(Address),
    #[error("genesis supply overflows")]
    Overflow,
    #[error("invalid parameter {0}")]
    Param(&'static str),
    #[error("cannot parse genesis: {0}")]
    Parse(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisOperator {
    pub address: Address,
    #[serde(with = "amount_text")]
    pub stake: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    #[serde(with = "amount_text")]
    pub balance: Amount,
}

/// The initial state of a network. Its [`Genesis::hash`] is the chain id every signature binds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Human name; part of the hash, so two testnets with equal contents still differ.
    pub chain_name: String,
    pub genesis_time: Timestamp,
    pub operators: Vec<GenesisOperator>,
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    #[serde(default)]
    pub params: Params,
}

impl Genesis {
    /// The chain id: blake3 (derive-key "agora/v1/genesis") of the canonical JSON form.
    pub fn hash(&self) -> Hash {
        let json = serde_json::to_vec(self).expect("genesis serialises");
        Hash::derive("agora/v1/genesis", &json)
    }

    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis =
            serde_json::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    pub fn from_toml(text: &str) -> Result<Genesis, GenesisError> {
        let g: Genesis = toml_from_str(text)?;
        g.validate()?;
        Ok(g)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serialises")
    }

    /// Total money in existence at genesis.
    pub fn supply(&self) -> Result<Amount, GenesisError> {
        Amount::checked_sum(
            self.operators
                .iter()
                .map(|o| o.stake)
                .chain(self.accounts.iter().map(|a| a.balance)),
        )
        .map_err(|_| GenesisError::Overflow)
    }

    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.operators.is_empty() {
            return Err(GenesisError::NoOperators);
        }
        let mut seen = std::collections::BTreeSet::new();
        for o in &self.operators {
            if !seen.insert(o.address) {
                return Err(GenesisError::Duplicate(o.address));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.accounts {
            if !seen.insert(a.address) {
                return Err(GenesisError::Duplicate(a.address));
            }
        }
        self.supply()?;
        let p = &self.params;
        let bps = [
            (p.slash_bps, "slash_bps"),
            (p.timeout_slash_bps, "timeout_slash_bps"),
            (p.client_compensation_bps, "client_compensation_bps"),
            (p.protocol_fee_bps, "protocol_fee_bps"),
            (p.evidence_slash_bps, "evidence_slash_bps"),
            (p.audit_bps, "audit_bps"),
            (p.low_participation_bps, "low_participation_bps"),
        ];
        for (v, name) in bps {
            if v > 10_000 {
                return Err(GenesisError::Param(name));
            }
        }
        if p.max_clock_step_ms == 0 {
            return Err(GenesisError::Param("max_clock_step_ms"));
        }
        if p.max_replicas == 0 || p.max_replicas > 16 {
            return Err(GenesisError::Param("max_replicas"));
        }
        if p.max_capacity == 0 {
            return Err(GenesisError::Param("max_capacity"));
        }
        if p.gas_f_min > p.gas_f_max {
            return Err(GenesisError::Param("gas_f_min"));
        }
        if p.min_auction_ms == 0 || p.min_auction_ms > p.max_auction_ms {
            return Err(GenesisError::Param("min_auction_ms"));
        }
        if p.min_deadline_ms > p.max_deadline_ms {
            return Err(GenesisError::Param("min_deadline_ms"));
        }
        if p.max_price_limit.0 > u64::MAX as u128 {
            return Err(GenesisError::Param("max_price_limit"));
        }
        Ok(())
    }
}

fn toml_from_str(text: &str) -> Result<Genesis, GenesisError> {
    toml::from_str(text).map_err(|e| GenesisError::Parse(e.to_string()))
}
