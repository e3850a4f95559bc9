//! Executor limits and engine settings.

use std::time::Duration;

/// Machine-wide limits of an [`crate::Executor`]. A job's own fuel and memory limits are clamped
/// to `max_fuel` and `max_memory_bytes`.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
    /// Largest stdin accepted, in bytes.
    pub max_input_bytes: usize,
    /// Largest stdout kept; a guest that writes more ends `OutputTooLarge`.
    pub max_output_bytes: usize,
    /// How much stderr is kept for diagnostics (excess is dropped silently).
    pub max_stderr_bytes: usize,
    /// Most arguments (not counting argv\[0\]) and their total size in bytes.
    pub max_args: usize,
    pub max_args_bytes: usize,
    /// Ceiling on any job's fuel limit.
    pub max_fuel: u64,
    /// Ceiling on any job's memory limit, in bytes.
    pub max_memory_bytes: u64,
    /// Most table elements a guest may have.
    pub max_table_elements: usize,
    /// Native stack the guest may use; pinned because recursion depth depends on it.
    pub max_wasm_stack: usize,
    /// Compiled modules kept in memory (least recently used evicted).
    pub cache_capacity: usize,
    /// Epoch tick of the wall-clock safety net.
    pub epoch_tick: Duration,
    /// Wall budget of a job = `base_wall + fuel / min_fuel_per_sec` seconds. Fuel must always trip
    /// first for an honest job, so this rate is well below the slowest measured burn rate.
    ///
    /// Measured with the `fuel_bound` bench on the 2-core x86-64 development box, loaded by other
    /// builds (ADR 011): plain wasm loops burn 110 M–2.5 G fuel/s (a dependent `f64.div` chain
    /// 114 M/s, `loop`/`br` 340–530 M/s); operators that call into the runtime at least
    /// 160 M/s and metered host calls at least 720 M/s; the slowest pattern of all is a chain of
    /// dependent loads over 128 MiB, each missing the caches and the TLB, at **31–35 M fuel/s**.
    /// `min_fuel_per_sec` is 10 M/s, 3.1 times below that. `base_wall` (2 s) covers what fuel
    /// does not meter, all bounded by the limits: instantiation (data segments up to the
    /// module cap, tables up to `max_table_elements`) and the first touch of every page of
    /// memory (0.19–0.25 s for 256 MiB, so about 0.5 s at the 512 MiB cap).
    pub base_wall: Duration,
    pub min_fuel_per_sec: u64,
    /// Jobs run at once by [`crate::AsyncExecutor`] (the coprocessor's capacity).
    pub concurrency: usize,
    /// Name the guest sees as argv\[0\].
    pub program_name: String,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            max_module_bytes: 16 << 20,
            max_input_bytes: 16 << 20,
            max_output_bytes: 4 << 20,
            max_stderr_bytes: 64 << 10,
            max_args: 256,
            max_args_bytes: 64 << 10,
            max_fuel: 100_000_000_000,
            max_memory_bytes: 512 << 20,
            max_table_elements: 100_000,
            max_wasm_stack: 512 << 10,
            cache_capacity: 64,
            epoch_tick: Duration::from_millis(10),
            base_wall: Duration::from_secs(2),
            min_fuel_per_sec: 10_000_000,
            concurrency: 2,
            program_name: "job".to_string(),
        }
    }
}

impl ExecConfig {
    /// Epoch ticks a job with `fuel` may run before the safety net fires.
    pub(crate) fn deadline_ticks(&self, fuel: u64) -> u64 {
        let tick_ms = self.epoch_tick.as_millis().max(1) as u64;
        let rate = self.min_fuel_per_sec.max(1);
        let fuel_ms =
            (fuel / rate).saturating_mul(1000) + (fuel % rate).saturating_mul(1000) / rate;
        let base_ms = self.base_wall.as_millis() as u64;
        base_ms.saturating_add(fuel_ms) / tick_ms + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_scales_with_fuel() {
        let c = ExecConfig::default();
        // 2 s base at 10 ms ticks.
        assert_eq!(c.deadline_ticks(0), 201);
        // 1 G fuel at 10 M/s is 100 s more.
        assert_eq!(c.deadline_ticks(1_000_000_000), 10_201);
        assert!(c.deadline_ticks(u64::MAX) > c.deadline_ticks(1 << 40));
    }
}
