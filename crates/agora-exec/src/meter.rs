//! Fuel for host calls: every WASI preview1 function a guest can import is charged in proportion
//! to the entries and bytes it may touch, before it does any work.
//!
//! wasmtime meters wasm operators only; a host call costs just the handful of instructions around
//! it, whatever it does. Without this module a guest made of `random_get` calls into a 60 MB
//! buffer, or `fd_write` calls scanning millions of iovecs, does seconds of host work per
//! thousand fuel and reaches the wall-clock safety net long before its fuel runs out (issue #12).
//!
//! [`add_to_linker`] adds wasmtime-wasi's preview1 functions and then shadows each one with a
//! wrapper that computes the call's cost from its arguments (and, for iovec arrays, from guest
//! memory), takes it from the store's fuel, and only then delegates to the real implementation
//! (wasmtime-wasi's `wasi_snapshot_preview1` module, the functions its own linker glue calls).
//! A call the remaining fuel cannot pay for ends the run with [`Trap::OutOfFuel`] and the fuel
//! left set to 0, exactly as an over-budget wasm loop does, so every replica reports the same
//! outcome and the same `fuel_used`. The cost depends only on the arguments, guest memory and
//! the job's arguments — never on timing or on what the host happens to have buffered.
//!
//! The cost of a call is [`HOST_CALL`] plus:
//!
//! | function | extra fuel |
//! |---|---|
//! | `fd_write`, `fd_pwrite`, `sock_send` | [`PER_ENTRY`] per iovec + [`PER_BYTE`] per byte the iovecs name |
//! | `fd_read`, `fd_pread`, `sock_recv` | the same, for the buffers they may fill |
//! | `random_get` | [`PER_RANDOM_BYTE`] per byte asked for |
//! | `args_get`, `args_sizes_get` | [`PER_ENTRY`] per argument + [`PER_BYTE`] per byte of arguments (both copy the whole list) |
//! | `environ_get`, `environ_sizes_get` | nothing (the environment is empty) |
//! | `poll_oneoff` | [`PER_SUBSCRIPTION`] per subscription |
//! | `fd_readdir`, `fd_prestat_dir_name`, `path_readlink` | [`PER_BYTE`] per byte of the output buffer |
//! | `path_*` | [`PER_BYTE`] per byte of each path |
//! | every other function | nothing |
//!
//! The iovec bytes are summed over every iovec, although wasmtime-wasi 48 reads or writes only
//! the first non-empty one: the charge is a bound on what the call may touch, not a model of one
//! implementation. An iovec array is paid for entry by entry before it is read, so the host never
//! scans more entries than the guest has paid for.

use wasmtime::{AsContextMut, Caller, Extern, Linker, OperatorCost, Trap};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wasmtime_wasi::p1::wasi_snapshot_preview1::WasiSnapshotPreview1 as _;
use wasmtime_wasi::runtime::in_tokio;
use wiggle::GuestMemory;

use crate::host::{GuestExit, Host};

/// Fuel every host call costs before anything it touches.
pub const HOST_CALL: u64 = 500;
/// Fuel per iovec, argument or other list entry a call may read or write.
pub const PER_ENTRY: u64 = 32;
/// Fuel per byte a call may copy between guest memory and the host.
pub const PER_BYTE: u64 = 1;
/// Fuel per byte of `random_get` (the generator makes them one at a time).
pub const PER_RANDOM_BYTE: u64 = 8;
/// Fuel per `poll_oneoff` subscription (48 bytes in, 32 bytes out).
pub const PER_SUBSCRIPTION: u64 = 128;

/// Fuel of a wasm operator that leaves compiled code for a call into the runtime (wasmtime
/// charges 1, like an `i32.add`).
pub const RUNTIME_CALL: u8 = 64;

/// wasmtime's operator costs (1 per operator, 1 per byte or element of bulk operations), with
/// the operators that call into the runtime raised to [`RUNTIME_CALL`] and table bulk operations
/// to 2 per element. With the defaults a loop of them burnt 16–42 M fuel/s; with these, 160 M/s
/// or more, in the range of plain wasm and well above the slowest honest pattern (figures in
/// ADR 011 and the `fuel_bound` bench).
pub(crate) fn operator_cost() -> OperatorCost {
    let mut c = OperatorCost::new();
    c.MemoryGrow = RUNTIME_CALL;
    c.MemoryFill = RUNTIME_CALL;
    c.TableGrow = RUNTIME_CALL;
    c.TableInit = RUNTIME_CALL;
    c.ElemDrop = RUNTIME_CALL;
    c.RefFunc = RUNTIME_CALL;
    c.variable.table_fill_per_element = 2;
    c.variable.table_copy_per_element = 2;
    c.variable.table_init_per_element = 2;
    c
}

/// WASI errno `ENOTSUP`, returned by the shadowed `poll_oneoff`.
const ENOTSUP: i32 = 58;

const MODULE: &str = "wasi_snapshot_preview1";

/// Take `cost` from the store's fuel, or end the run as out of fuel (all fuel used) if the fuel
/// left cannot pay for it.
fn charge(caller: &mut Caller<'_, Host>, cost: u64) -> wasmtime::Result<()> {
    if !caller.data().metered {
        return Ok(());
    }
    let left = caller.get_fuel()?;
    match left.checked_sub(cost) {
        Some(rest) => caller.set_fuel(rest),
        None => {
            caller.set_fuel(0)?;
            Err(wasmtime::Error::new(Trap::OutOfFuel))
        }
    }
}

/// `count * rate`, saturating: an unpayable cost is as good as an infinite one.
fn times(count: impl Into<u64>, rate: u64) -> u64 {
    count.into().saturating_mul(rate)
}

/// Cost of a guest-sized argument that is an unsigned 32-bit count or length.
fn len(arg: i32) -> u64 {
    u64::from(arg as u32)
}

/// Charge for an iovec array of `count` entries at `ptr`: first the entries (before reading any),
/// then the bytes they name. Entries outside guest memory are not counted (the call will fail on
/// them without touching their buffers).
fn charge_iovecs(caller: &mut Caller<'_, Host>, ptr: i32, count: i32) -> wasmtime::Result<()> {
    let count = len(count);
    charge(caller, HOST_CALL.saturating_add(times(count, PER_ENTRY)))?;
    let mut bytes: u64 = 0;
    if let Some(Extern::Memory(memory)) = caller.get_export("memory") {
        let data = memory.data(&*caller);
        let start = u64::from(ptr as u32);
        for i in 0..count {
            let Some(at) = i
                .checked_mul(8)
                .and_then(|o| o.checked_add(start))
                .and_then(|a| usize::try_from(a).ok())
            else {
                break;
            };
            let Some(entry) = at.checked_add(8).and_then(|end| data.get(at..end)) else {
                break;
            };
            let buf_len = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            bytes = bytes.saturating_add(u64::from(buf_len));
        }
    }
    charge(caller, times(bytes, PER_BYTE))
}

/// Fuel for `args_get` / `args_sizes_get`: both copy the whole argument list on the host.
fn args_cost(caller: &Caller<'_, Host>) -> u64 {
    let (count, bytes) = caller.data().args_size;
    HOST_CALL
        .saturating_add(times(count, PER_ENTRY))
        .saturating_add(times(bytes, PER_BYTE))
}

/// Split the caller into guest memory and the WASI context, as wasmtime-wasi's own glue does, and
/// run `$call` with them.
macro_rules! delegate {
    ($caller:ident, |$ctx:ident, $mem:ident| $call:expr) => {{
        let export = $caller.get_export("memory");
        let hostcall_fuel = $caller.as_context_mut().hostcall_fuel();
        let Some(Extern::Memory(memory)) = export else {
            return Err(wasmtime::Error::msg("missing required memory export"));
        };
        let (data, host) = memory.data_and_store_mut(&mut $caller);
        let $ctx = &mut host.wasi;
        $ctx.set_hostcall_fuel(hostcall_fuel);
        let mut guest = GuestMemory::Unshared(data);
        let $mem = &mut guest;
        $call
    }};
}

/// Shadow `$name` with a wrapper that charges `$cost` (an expression over the caller and the
/// arguments, evaluated before the call) and then runs the real function, sync or on tokio.
macro_rules! metered {
    ($linker:ident, $mode:ident $name:ident ($($a:ident : $t:ty),*) => $ret:ty,
     |$caller:ident| $cost:block) => {
        $linker.func_wrap(
            MODULE,
            stringify!($name),
            move |mut $caller: Caller<'_, Host>, $($a: $t),*| -> wasmtime::Result<$ret> {
                $cost;
                delegate!($caller, |ctx, mem| metered!(@call $mode, p1::$name(ctx, mem $(, $a)*)))
            },
        )?;
    };
    (@call sync, $call:expr) => { $call };
    (@call async, $call:expr) => { in_tokio($call) };
}

/// Only the fixed cost.
macro_rules! flat {
    ($linker:ident, $mode:ident $name:ident ($($a:ident : $t:ty),*)) => {
        metered!($linker, $mode $name ($($a: $t),*) => i32, |caller| {
            charge(&mut caller, HOST_CALL)?
        });
    };
}

/// The fixed cost plus [`PER_BYTE`] for each (guest-sized) length argument listed.
macro_rules! sized {
    ($linker:ident, $mode:ident $name:ident ($($a:ident : $t:ty),*) bytes [$($n:ident),*]) => {
        metered!($linker, $mode $name ($($a: $t),*) => i32, |caller| {
            let mut cost = HOST_CALL;
            $(cost = cost.saturating_add(times(len($n), PER_BYTE));)*
            charge(&mut caller, cost)?
        });
    };
}

/// Add every WASI preview1 function to `linker`, each charged fuel as described in the module
/// docs; `poll_oneoff` is refused (`ENOTSUP`: sleeping in real time would make the outcome
/// depend on the host) and `proc_exit` ends the run with any exit code.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, |h: &mut Host| &mut h.wasi)?;
    linker.allow_shadowing(true);
    add_metered(linker)
}

/// The metered wrappers alone (each shadows the function of the same name).
fn add_metered(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    // Arguments and environment.
    metered!(linker, sync args_get(a: i32, b: i32) => i32, |caller| {
        let cost = args_cost(&caller);
        charge(&mut caller, cost)?
    });
    metered!(linker, sync args_sizes_get(a: i32, b: i32) => i32, |caller| {
        let cost = args_cost(&caller);
        charge(&mut caller, cost)?
    });
    flat!(linker, sync environ_get(a: i32, b: i32));
    flat!(linker, sync environ_sizes_get(a: i32, b: i32));

    // Clocks, randomness, scheduling.
    flat!(linker, sync clock_res_get(id: i32, out: i32));
    flat!(linker, sync clock_time_get(id: i32, precision: i64, out: i32));
    metered!(linker, sync random_get(buf: i32, buf_len: i32) => i32, |caller| {
        charge(&mut caller, HOST_CALL.saturating_add(times(len(buf_len), PER_RANDOM_BYTE)))?
    });
    flat!(linker, sync sched_yield());
    flat!(linker, sync proc_raise(sig: i32));
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, Host>, _in: i32, _out: i32, n: i32, _nevents: i32| {
            charge(
                &mut caller,
                HOST_CALL.saturating_add(times(len(n), PER_SUBSCRIPTION)),
            )?;
            wasmtime::Result::<i32>::Ok(ENOTSUP)
        },
    )?;
    // Every exit code, including those >= 126 that WASI would turn into a plain error.
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |mut caller: Caller<'_, Host>, code: i32| -> wasmtime::Result<()> {
            charge(&mut caller, HOST_CALL)?;
            Err(wasmtime::Error::new(GuestExit(code)))
        },
    )?;

    // Reads and writes through iovec arrays.
    metered!(linker, async fd_write(fd: i32, iovs: i32, n: i32, out: i32) => i32, |caller| {
        charge_iovecs(&mut caller, iovs, n)?
    });
    metered!(linker, async fd_read(fd: i32, iovs: i32, n: i32, out: i32) => i32, |caller| {
        charge_iovecs(&mut caller, iovs, n)?
    });
    metered!(linker, async fd_pwrite(fd: i32, iovs: i32, n: i32, offset: i64, out: i32) => i32,
        |caller| { charge_iovecs(&mut caller, iovs, n)? });
    metered!(linker, async fd_pread(fd: i32, iovs: i32, n: i32, offset: i64, out: i32) => i32,
        |caller| { charge_iovecs(&mut caller, iovs, n)? });
    metered!(linker, sync sock_send(fd: i32, iovs: i32, n: i32, flags: i32, out: i32) => i32,
        |caller| { charge_iovecs(&mut caller, iovs, n)? });
    metered!(linker, sync sock_recv(fd: i32, iovs: i32, n: i32, flags: i32, out: i32, oflags: i32)
        => i32, |caller| { charge_iovecs(&mut caller, iovs, n)? });

    // Descriptors.
    flat!(linker, async fd_advise(fd: i32, offset: i64, size: i64, advice: i32));
    flat!(linker, sync fd_allocate(fd: i32, offset: i64, size: i64));
    flat!(linker, async fd_close(fd: i32));
    flat!(linker, async fd_datasync(fd: i32));
    flat!(linker, async fd_fdstat_get(fd: i32, out: i32));
    flat!(linker, sync fd_fdstat_set_flags(fd: i32, flags: i32));
    flat!(linker, sync fd_fdstat_set_rights(fd: i32, base: i64, inheriting: i64));
    flat!(linker, async fd_filestat_get(fd: i32, out: i32));
    flat!(linker, async fd_filestat_set_size(fd: i32, size: i64));
    flat!(linker, async fd_filestat_set_times(fd: i32, atim: i64, mtim: i64, flags: i32));
    flat!(linker, sync fd_prestat_get(fd: i32, out: i32));
    sized!(linker, sync fd_prestat_dir_name(fd: i32, path: i32, path_len: i32) bytes [path_len]);
    sized!(linker, async fd_readdir(fd: i32, buf: i32, buf_len: i32, cookie: i64, out: i32)
        bytes [buf_len]);
    flat!(linker, async fd_renumber(fd: i32, to: i32));
    flat!(linker, async fd_seek(fd: i32, offset: i64, whence: i32, out: i32));
    flat!(linker, async fd_sync(fd: i32));
    flat!(linker, sync fd_tell(fd: i32, out: i32));

    // Paths (there are no preopened directories, so all of these fail, but they may read the
    // path first).
    sized!(linker, async path_create_directory(fd: i32, p: i32, p_len: i32) bytes [p_len]);
    sized!(linker, async path_filestat_get(fd: i32, flags: i32, p: i32, p_len: i32, out: i32)
        bytes [p_len]);
    sized!(linker, async path_filestat_set_times(fd: i32, flags: i32, p: i32, p_len: i32,
        atim: i64, mtim: i64, fst: i32) bytes [p_len]);
    sized!(linker, async path_link(fd: i32, flags: i32, p: i32, p_len: i32, fd2: i32, q: i32,
        q_len: i32) bytes [p_len, q_len]);
    metered!(linker, async path_open(fd: i32, dirflags: i32, p: i32, p_len: i32, oflags: i32,
        base: i64, inheriting: i64, fdflags: i32, out: i32) => i32, |caller| {
        charge(&mut caller, HOST_CALL.saturating_add(times(len(p_len), PER_BYTE)))?
    });
    sized!(linker, async path_readlink(fd: i32, p: i32, p_len: i32, buf: i32, buf_len: i32,
        out: i32) bytes [p_len, buf_len]);
    sized!(linker, async path_remove_directory(fd: i32, p: i32, p_len: i32) bytes [p_len]);
    sized!(linker, async path_rename(fd: i32, p: i32, p_len: i32, fd2: i32, q: i32, q_len: i32)
        bytes [p_len, q_len]);
    sized!(linker, async path_symlink(p: i32, p_len: i32, fd: i32, q: i32, q_len: i32)
        bytes [p_len, q_len]);
    sized!(linker, async path_unlink_file(fd: i32, p: i32, p_len: i32) bytes [p_len]);

    // Sockets (none are ever handed in).
    flat!(linker, sync sock_accept(fd: i32, flags: i32, out: i32));
    flat!(linker, sync sock_shutdown(fd: i32, how: i32));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use agora_types::Hash;
    use wasmtime::{Engine, Store};
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

    use super::*;
    use crate::host::{wasi_ctx, GuestIo, Limiter};

    fn names(linker: &Linker<Host>, engine: &Engine) -> BTreeSet<(String, String)> {
        let io = GuestIo {
            job_id: Hash::of(b"names"),
            program_name: "job",
            args: &[],
            input: b"",
            stdout: MemoryOutputPipe::new(16),
            stderr: MemoryOutputPipe::new(16),
        };
        let host = Host {
            wasi: wasi_ctx(io),
            limiter: Limiter {
                memory_bytes: 0,
                table_elements: 0,
                hit: false,
            },
            metered: false,
            args_size: (1, 4),
        };
        let mut store = Store::new(engine, host);
        linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_string(), name.to_string()))
            .collect()
    }

    /// A function wasmtime-wasi adds that has no wrapper would be free: a new wasmtime-wasi
    /// release must not slip one in unnoticed.
    #[test]
    fn every_wasi_function_has_a_metered_wrapper() {
        let engine = Engine::default();
        let mut real: Linker<Host> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut real, |h: &mut Host| &mut h.wasi).expect("wasi");
        let mut ours: Linker<Host> = Linker::new(&engine);
        add_metered(&mut ours).expect("wrappers");
        let real = names(&real, &engine);
        let ours = names(&ours, &engine);
        assert_eq!(real.len(), 46, "preview1 has 46 functions");
        assert_eq!(real, ours);
    }
}
