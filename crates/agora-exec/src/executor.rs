//! The synchronous executor: engine, linker, module cache and the run itself.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_types::Hash;
use wasmtime::{Config, Engine, InstancePre, Linker, Module, OptLevel, Store, Trap, TypedFunc};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::I32Exit;

use crate::config::ExecConfig;
use crate::host::{wasi_ctx, GuestExit, GuestIo, Host, Limiter};
use crate::outcome::{ExecResult, Outcome};

/// Failure to set up an executor, or to prepare a module outside a job run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("engine setup failed: {0}")]
    Engine(String),
    #[error("invalid module: {0}")]
    InvalidModule(String),
    #[error("cannot assemble module: {0}")]
    Assemble(String),
}

/// One job run, borrowed from the caller.
#[derive(Clone, Copy, Debug)]
pub struct JobRun<'a> {
    /// Seeds the guest's randomness.
    pub job_id: Hash,
    /// The wasm binary (never text: assemble `.wat` first with [`crate::assemble`]).
    pub module: &'a [u8],
    /// The guest's stdin.
    pub input: &'a [u8],
    /// The guest's arguments after argv\[0\].
    pub args: &'a [String],
    /// Fuel limit, clamped to [`ExecConfig::max_fuel`].
    pub fuel: u64,
    /// Linear memory limit, clamped to [`ExecConfig::max_memory_bytes`].
    pub memory_limit_bytes: u64,
}

type CompiledModule = Result<InstancePre<Host>, String>;

struct CacheEntry {
    compiled: CompiledModule,
    last_used: u64,
}

/// A bounded least-recently-used map from module hash to its compiled, linked form (or to the
/// reason it is invalid, so a bad module is not recompiled for every submission).
struct ModuleCache {
    entries: HashMap<Hash, CacheEntry>,
    clock: u64,
    capacity: usize,
}

impl ModuleCache {
    fn get(&mut self, hash: &Hash) -> Option<CompiledModule> {
        self.clock += 1;
        let now = self.clock;
        self.entries.get_mut(hash).map(|e| {
            e.last_used = now;
            e.compiled.clone()
        })
    }

    fn insert(&mut self, hash: Hash, compiled: CompiledModule) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&hash) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(h, e)| (e.last_used, **h))
                .map(|(h, _)| *h);
            match oldest {
                Some(h) => {
                    self.entries.remove(&h);
                }
                None => break,
            }
        }
        self.entries.insert(
            hash,
            CacheEntry {
                compiled,
                last_used: self.clock,
            },
        );
    }
}

/// Runs deterministic WASI command modules under fuel, memory and wall-clock limits.
///
/// Cheap to share behind an `Arc`; `run` takes `&self` and may be called from many threads.
/// `run` must not be called on an async runtime's worker thread (use [`crate::AsyncExecutor`]).
pub struct Executor {
    engine: Engine,
    linker: Linker<Host>,
    cache: Mutex<ModuleCache>,
    config: ExecConfig,
    metered: bool,
    _ticker: Arc<()>,
}

impl Executor {
    /// Build the engine (deterministic settings), the WASI linker, and start the epoch ticker.
    pub fn new(config: ExecConfig) -> Result<Executor, ExecError> {
        Self::with_fuel_metering(config, true)
    }

    /// As [`Executor::new`], optionally without fuel metering. Without it `fuel` is ignored,
    /// `fuel_used` is 0 and only the wall clock bounds a run: for benchmarks, never for jobs.
    pub fn with_fuel_metering(config: ExecConfig, fuel: bool) -> Result<Executor, ExecError> {
        let mut c = Config::new();
        c.consume_fuel(fuel)
            .operator_cost(crate::meter::operator_cost())
            .epoch_interruption(true)
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .relaxed_simd_deterministic(true)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .max_wasm_stack(config.max_wasm_stack)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        let engine = Engine::new(&c).map_err(|e| ExecError::Engine(format!("{e:#}")))?;

        // Every WASI function, charged fuel for what it touches (`poll_oneoff` refused, since
        // sleeping in real time would make the outcome depend on the host; `proc_exit` with
        // any code).
        let mut linker: Linker<Host> = Linker::new(&engine);
        crate::meter::add_to_linker(&mut linker)
            .map_err(|e| ExecError::Engine(format!("{e:#}")))?;

        let ticker = Arc::new(());
        spawn_ticker(&engine, Arc::downgrade(&ticker), config.epoch_tick)?;

        Ok(Executor {
            engine,
            linker,
            cache: Mutex::new(ModuleCache {
                entries: HashMap::new(),
                clock: 0,
                capacity: config.cache_capacity,
            }),
            config,
            metered: fuel,
            _ticker: ticker,
        })
    }

    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// Number of compiled modules currently cached.
    pub fn cached_modules(&self) -> usize {
        self.cache.lock().map(|c| c.entries.len()).unwrap_or(0)
    }

    /// Compile and link `module` (or find it in the cache) without running it. Returns the
    /// module's blake3 hash. Useful to reject a bad module before bidding on it.
    pub fn prepare(&self, module: &[u8]) -> Result<Hash, ExecError> {
        let hash = Hash::of(module);
        self.compiled(hash, module)
            .0
            .map(|_| hash)
            .map_err(ExecError::InvalidModule)
    }

    /// Compile without the cache: for measuring compile time.
    pub fn compile_uncached(&self, module: &[u8]) -> Result<(), ExecError> {
        self.compile(module)
            .map(|_| ())
            .map_err(ExecError::InvalidModule)
    }

    fn compiled(&self, hash: Hash, module: &[u8]) -> (CompiledModule, bool) {
        if let Some(hit) = self.cache.lock().ok().and_then(|mut c| c.get(&hash)) {
            return (hit, true);
        }
        // Compile outside the lock; a race compiles twice, harmlessly.
        let compiled = self.compile(module);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(hash, compiled.clone());
        }
        (compiled, false)
    }

    fn compile(&self, module: &[u8]) -> CompiledModule {
        if module.len() > self.config.max_module_bytes {
            return Err(format!(
                "module is {} bytes, over the limit of {}",
                module.len(),
                self.config.max_module_bytes
            ));
        }
        if Engine::detect_precompiled(module).is_some() {
            return Err("precompiled artifacts are not accepted".to_string());
        }
        let compiled = Module::from_binary(&self.engine, module).map_err(|e| format!("{e:#}"))?;
        match compiled.get_export("_start") {
            Some(wasmtime::ExternType::Func(f))
                if f.params().len() == 0 && f.results().len() == 0 => {}
            Some(_) => return Err("export `_start` is not a function of no arguments".into()),
            None => return Err("no `_start` export: not a WASI command".into()),
        }
        self.linker
            .instantiate_pre(&compiled)
            .map_err(|e| format!("{e:#}"))
    }

    /// Run one job. Never panics: every failure is an [`Outcome`].
    pub fn run(&self, job: JobRun<'_>) -> ExecResult {
        let started = Instant::now();
        let mut result = match catch_unwind(AssertUnwindSafe(|| self.run_inner(job))) {
            Ok(r) => r,
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_string());
                tracing::error!(target: "exec.run", job = %job.job_id.short(), %msg, "executor panicked");
                ExecResult::failed(Outcome::Internal(msg))
            }
        };
        result.elapsed = started.elapsed();
        result
    }

    fn run_inner(&self, job: JobRun<'_>) -> ExecResult {
        let cfg = &self.config;
        if job.input.len() > cfg.max_input_bytes {
            return ExecResult::failed(Outcome::InvalidInput(format!(
                "input is {} bytes, over the limit of {}",
                job.input.len(),
                cfg.max_input_bytes
            )));
        }
        let args_bytes: usize = job.args.iter().map(|a| a.len() + 1).sum();
        if job.args.len() > cfg.max_args || args_bytes > cfg.max_args_bytes {
            return ExecResult::failed(Outcome::InvalidInput(format!(
                "{} arguments of {} bytes, over the limit of {} arguments or {} bytes",
                job.args.len(),
                args_bytes,
                cfg.max_args,
                cfg.max_args_bytes
            )));
        }
        if job.args.iter().any(|a| a.contains('\0')) {
            return ExecResult::failed(Outcome::InvalidInput("argument contains NUL".into()));
        }

        let hash = Hash::of(job.module);
        let (compiled, cache_hit) = self.compiled(hash, job.module);
        let pre = match compiled {
            Ok(pre) => pre,
            Err(reason) => {
                let mut r = ExecResult::failed(Outcome::InvalidModule(reason));
                r.cache_hit = cache_hit;
                return r;
            }
        };

        let fuel = job.fuel.min(cfg.max_fuel);
        let memory_limit =
            usize::try_from(job.memory_limit_bytes.min(cfg.max_memory_bytes)).unwrap_or(usize::MAX);
        // One byte over the cap tells "wrote exactly the cap" from "wrote more".
        let stdout = MemoryOutputPipe::new(cfg.max_output_bytes.saturating_add(1));
        let stderr = MemoryOutputPipe::new(cfg.max_stderr_bytes);
        let io = GuestIo {
            job_id: job.job_id,
            program_name: &cfg.program_name,
            args: job.args,
            input: job.input,
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        let args_size = io.args_size();
        let host = Host {
            wasi: wasi_ctx(io),
            metered: self.metered,
            args_size,
            limiter: Limiter {
                memory_bytes: memory_limit,
                table_elements: cfg.max_table_elements,
                hit: false,
            },
        };

        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        let metered = self.metered;
        if metered {
            if let Err(e) = store.set_fuel(fuel) {
                return ExecResult::failed(Outcome::Internal(format!("{e:#}")));
            }
        }
        store.set_epoch_deadline(cfg.deadline_ticks(fuel));

        let run = pre.instantiate(&mut store).and_then(|instance| {
            let start: TypedFunc<(), ()> = instance.get_typed_func(&mut store, "_start")?;
            start.call(&mut store, ())
        });

        let fuel_used = if metered {
            fuel.saturating_sub(store.get_fuel().unwrap_or(0))
        } else {
            0
        };
        let limit_hit = store.data().limiter.hit;
        drop(store);

        let outcome = match run {
            Ok(()) => Outcome::Success,
            Err(e) => classify(&e, limit_hit),
        };
        let stdout = stdout.contents().to_vec();
        let stderr = stderr.contents().to_vec();
        // Too much output is a property of the job only if the run ended deterministically: a
        // run the wall-clock net stopped stays `Timeout`, never a committable outcome whose fuel
        // used depends on timing.
        let (outcome, stdout) = if stdout.len() > cfg.max_output_bytes {
            let mut kept = stdout;
            kept.truncate(cfg.max_output_bytes);
            let outcome = if outcome.is_deterministic() {
                Outcome::OutputTooLarge
            } else {
                outcome
            };
            (outcome, kept)
        } else {
            (outcome, stdout)
        };
        let exit_code = match outcome {
            Outcome::Success => 0,
            Outcome::Exit(c) => c,
            _ => -1,
        };
        tracing::debug!(
            target: "exec.run",
            job = %job.job_id.short(),
            module = %hash.short(),
            outcome = %outcome,
            fuel_used,
            cache_hit,
            "job ran"
        );
        ExecResult {
            outcome,
            exit_code,
            stdout,
            stderr,
            fuel_used,
            cache_hit,
            elapsed: Duration::ZERO,
        }
    }
}

/// Map a failed instantiate or `_start` call to an outcome. Order matters: after a refused grow
/// (the limiter's flag) only a clean exit is still a success; any other end — a trap, a non-zero
/// exit, fuel exhaustion — is the memory limit's doing.
fn classify(e: &wasmtime::Error, limit_hit: bool) -> Outcome {
    let exit = e
        .downcast_ref::<GuestExit>()
        .map(|GuestExit(code)| *code)
        .or_else(|| e.downcast_ref::<I32Exit>().map(|I32Exit(code)| *code));
    if exit == Some(0) {
        return Outcome::Success;
    }
    if limit_hit {
        return Outcome::MemoryExceeded;
    }
    if let Some(code) = exit {
        return Outcome::Exit(code);
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Outcome::OutOfFuel,
            Trap::Interrupt => Outcome::Timeout,
            other => Outcome::Trap(other.to_string()),
        };
    }
    Outcome::Trap(e.root_cause().to_string())
}

/// One thread per executor advances the engine's epoch; it ends when the executor is dropped.
fn spawn_ticker(
    engine: &Engine,
    alive: std::sync::Weak<()>,
    tick: Duration,
) -> Result<(), ExecError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("agora-exec-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(tick);
            if alive.upgrade().is_none() {
                break;
            }
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .map(|_| ())
        .map_err(|e| ExecError::Engine(format!("cannot start epoch ticker: {e}")))
}
