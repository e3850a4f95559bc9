;; primes: prints the primes below N, one per line, with a sieve of Eratosthenes.
;; N is the first argument, else a number on stdin, else 100. N above 2^30 exits with code 2.
;;
;;   agora job submit examples/primes.wat --arg 1000000
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  ;; Memory: 0..8 iovec, 8..12 byte count, 16..24 argument sizes, 200..220 digit scratch,
  ;; 256..512 argv pointers, 1024..5120 argument strings, 5120..8192 stdin, 8192..24576 output buffer
  ;; 65536.. sieve (one byte per number, 1 = composite), grown to fit N.
  (global $out_len (mut i32) (i32.const 0))

  (func $write (param $ptr i32) (param $len i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (if (i32.eqz (i32.load (i32.const 8))) (then (call $proc_exit (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
        (br $again))))

  (func $flush
    (call $write (i32.const 8192) (global.get $out_len))
    (global.set $out_len (i32.const 0)))

  (func $putc (param $c i32)
    (if (i32.ge_u (global.get $out_len) (i32.const 16384)) (then (call $flush)))
    (i32.store8 (i32.add (i32.const 8192) (global.get $out_len)) (local.get $c))
    (global.set $out_len (i32.add (global.get $out_len) (i32.const 1))))

  ;; Decimal digits of n.
  (func $put_u64 (param $n i64)
    (local $i i32)
    (local.set $i (i32.const 220))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (local.get $i)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (loop $emit
      (call $putc (i32.load8_u (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $emit (i32.lt_u (local.get $i) (i32.const 220)))))


  ;; Parse a decimal number at ptr: leading spaces and control bytes are skipped, digits are read
  ;; up to the first other byte. -1 if there are no digits or the value is over 10^15.
  (func $parse_u64 (param $p i32) (result i64)
    (local $n i64) (local $c i32) (local $any i32)
    (block $lead_done
      (loop $lead
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $lead_done (i32.or (i32.eqz (local.get $c)) (i32.gt_u (local.get $c) (i32.const 32))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $lead)))
    (block $done
      (loop $digit
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 9)))
        (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10)) (i64.extend_i32_u (local.get $c))))
        (if (i64.gt_u (local.get $n) (i64.const 1000000000000000)) (then (return (i64.const -1))))
        (local.set $any (i32.const 1))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digit)))
    (if (result i64) (local.get $any) (then (local.get $n)) (else (i64.const -1))))

  ;; argv[1] as a number, or -1 if absent (argv pointers at 256, strings at 1024..5120).
  (func $arg1_u64 (result i64)
    (if (call $args_sizes_get (i32.const 16) (i32.const 20)) (then (return (i64.const -1))))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 2)) (then (return (i64.const -1))))
    (if (i32.or (i32.gt_u (i32.load (i32.const 16)) (i32.const 64))
                (i32.gt_u (i32.load (i32.const 20)) (i32.const 4096)))
      (then (return (i64.const -1))))
    (if (call $args_get (i32.const 256) (i32.const 1024)) (then (return (i64.const -1))))
    (call $parse_u64 (i32.load (i32.const 260))))

  ;; The first bytes of stdin (up to 3000) as a number, or -1.
  (func $stdin_u64 (result i64)
    (i32.store (i32.const 0) (i32.const 5120))
    (i32.store (i32.const 4) (i32.const 3000))
    (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (return (i64.const -1))))
    (i32.store8 (i32.add (i32.const 5120) (i32.load (i32.const 8))) (i32.const 0))
    (call $parse_u64 (i32.const 5120)))

  ;; argv[1], else stdin, else the default.
  (func $param (param $default i64) (result i64)
    (local $n i64)
    (local.set $n (call $arg1_u64))
    (if (i64.ge_s (local.get $n) (i64.const 0)) (then (return (local.get $n))))
    (local.set $n (call $stdin_u64))
    (if (i64.ge_s (local.get $n) (i64.const 0)) (then (return (local.get $n))))
    (local.get $default))

  (func (export "_start")
    (local $n i32) (local $i i32) (local $j i32) (local $pages i32) (local $n64 i64)
    (local.set $n64 (call $param (i64.const 100)))
    (if (i64.gt_u (local.get $n64) (i64.const 1073741824)) (then (call $proc_exit (i32.const 2))))
    (local.set $n (i32.wrap_i64 (local.get $n64)))
    ;; pages for 65536 + n bytes
    (local.set $pages (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 2)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (call $proc_exit (i32.const 3))))))
    (local.set $i (i32.const 2))
    (block $sieved
      (loop $outer
        (br_if $sieved (i32.ge_u (i32.mul (local.get $i) (local.get $i)) (local.get $n)))
        (if (i32.eqz (i32.load8_u (i32.add (i32.const 65536) (local.get $i))))
          (then
            (local.set $j (i32.mul (local.get $i) (local.get $i)))
            (block $marked
              (loop $inner
                (br_if $marked (i32.ge_u (local.get $j) (local.get $n)))
                (i32.store8 (i32.add (i32.const 65536) (local.get $j)) (i32.const 1))
                (local.set $j (i32.add (local.get $j) (local.get $i)))
                (br $inner)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $outer)))
    (local.set $i (i32.const 2))
    (block $printed
      (loop $print
        (br_if $printed (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eqz (i32.load8_u (i32.add (i32.const 65536) (local.get $i))))
          (then
            (call $put_u64 (i64.extend_i32_u (local.get $i)))
            (call $putc (i32.const 10))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $print)))
    (call $flush))
)
