//! What a job run produced, and its canonical digest.

use std::fmt;
use std::time::Duration;

use agora_types::Hash;

/// How a run ended. Every variant except [`Outcome::Timeout`] and [`Outcome::Internal`] is a
/// deterministic function of (module, input, args, fuel limit, memory limit, job id) for a given
/// build of this crate, so replicas that ran the same job must agree on it bit for bit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `_start` returned, or the guest called `proc_exit(0)`.
    Success,
    /// The guest called `proc_exit(code)` with a non-zero code.
    Exit(i32),
    /// The guest trapped (unreachable, division by zero, out-of-bounds access, stack overflow,
    /// a failing WASI call, ...). The reason is the trap's message.
    Trap(String),
    /// The job's fuel limit was used up.
    OutOfFuel,
    /// The guest asked for more linear memory (or table space) than the job allows, and did not
    /// then exit cleanly: the grow returned -1 (or instantiation failed) and the run ended by a
    /// trap, a non-zero exit or fuel exhaustion. `fuel_used` counts up to that end.
    MemoryExceeded,
    /// The module could not be compiled or linked: not wasm, a precompiled artifact, an unknown
    /// import, no `_start` export, over the size cap, ...
    InvalidModule(String),
    /// The job's input or arguments are over the executor's caps.
    InvalidInput(String),
    /// The guest wrote more than the stdout cap.
    OutputTooLarge,
    /// The wall-clock safety net fired. Not deterministic: never commit it as a job result.
    Timeout,
    /// The executor itself failed (a host panic, a failure to create the store). Not
    /// deterministic: never commit it as a job result.
    Internal(String),
}

impl Outcome {
    /// Whether this outcome is a property of the job (and may be committed), rather than of the
    /// machine that ran it.
    pub fn is_deterministic(&self) -> bool {
        !matches!(self, Outcome::Timeout | Outcome::Internal(_))
    }

    /// Whether the program ran to a normal end (`Success`).
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// A stable lowercase name for the variant, for JSON and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Exit(_) => "exit",
            Outcome::Trap(_) => "trap",
            Outcome::OutOfFuel => "out_of_fuel",
            Outcome::MemoryExceeded => "memory_exceeded",
            Outcome::InvalidModule(_) => "invalid_module",
            Outcome::InvalidInput(_) => "invalid_input",
            Outcome::OutputTooLarge => "output_too_large",
            Outcome::Timeout => "timeout",
            Outcome::Internal(_) => "internal",
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Exit(_) => 1,
            Outcome::Trap(_) => 2,
            Outcome::OutOfFuel => 3,
            Outcome::MemoryExceeded => 4,
            Outcome::InvalidModule(_) => 5,
            Outcome::InvalidInput(_) => 6,
            Outcome::OutputTooLarge => 7,
            Outcome::Timeout => 8,
            Outcome::Internal(_) => 9,
        }
    }

    fn reason(&self) -> &str {
        match self {
            Outcome::Trap(r)
            | Outcome::InvalidModule(r)
            | Outcome::InvalidInput(r)
            | Outcome::Internal(r) => r,
            _ => "",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Exit(code) => write!(f, "exit code {code}"),
            Outcome::Trap(r) => write!(f, "trap: {r}"),
            Outcome::OutOfFuel => f.write_str("out of fuel"),
            Outcome::MemoryExceeded => f.write_str("memory limit exceeded"),
            Outcome::InvalidModule(r) => write!(f, "invalid module: {r}"),
            Outcome::InvalidInput(r) => write!(f, "invalid input: {r}"),
            Outcome::OutputTooLarge => f.write_str("output too large"),
            Outcome::Timeout => f.write_str("wall-clock timeout"),
            Outcome::Internal(r) => write!(f, "internal error: {r}"),
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecResult {
    pub outcome: Outcome,
    /// 0 for `Success`, the code for `Exit`, -1 for every other outcome.
    pub exit_code: i32,
    /// Everything the guest wrote to stdout, up to the cap (on `OutputTooLarge`, the first `cap`
    /// bytes).
    pub stdout: Vec<u8>,
    /// The first bytes the guest wrote to stderr (diagnostics only: not part of the digest).
    pub stderr: Vec<u8>,
    /// Fuel consumed, at most the job's limit. After a trap it is a deterministic lower bound.
    pub fuel_used: u64,
    /// Whether the compiled module came from the cache (machine-local, not part of the digest).
    pub cache_hit: bool,
    /// Wall time of the run including any compile (machine-local, not part of the digest).
    pub elapsed: Duration,
}

impl ExecResult {
    pub(crate) fn failed(outcome: Outcome) -> ExecResult {
        ExecResult {
            outcome,
            exit_code: -1,
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 0,
            cache_hit: false,
            elapsed: Duration::ZERO,
        }
    }

    /// blake3 of stdout: what a client checks the bytes of `job result` against.
    pub fn output_hash(&self) -> Hash {
        Hash::of(&self.stdout)
    }

    /// The canonical digest replicas compare: outcome kind and reason, exit code, fuel used and
    /// the stdout bytes, length-prefixed under a domain-separation context. Machine-local fields
    /// (`stderr`, `cache_hit`, `elapsed`) are left out.
    pub fn digest(&self) -> Hash {
        let mut h = blake3::Hasher::new_derive_key("agora.exec.result.v1");
        h.update(&[self.outcome.tag()]);
        let reason = self.outcome.reason().as_bytes();
        h.update(&(reason.len() as u64).to_le_bytes());
        h.update(reason);
        h.update(&self.exit_code.to_le_bytes());
        h.update(&self.fuel_used.to_le_bytes());
        h.update(&(self.stdout.len() as u64).to_le_bytes());
        h.update(&self.stdout);
        Hash(*h.finalize().as_bytes())
    }
}
