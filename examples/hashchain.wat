;; hashchain: seeds a 64-bit state with FNV-1a over stdin, applies the splitmix64 finaliser
;; N times (N is the first argument, else 1000), and prints the state as 16 hex digits.
;; A CPU-bound job whose answer is easy to check natively.
;;
;;   agora job submit examples/hashchain.wat --arg 10000000 --input seed.txt
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; Memory: 0..8 iovec, 8..12 byte count, 16..24 argument sizes, 200..220 digit scratch,
  ;; 256..512 argv pointers, 1024..5120 argument strings, 5120..8192 stdin, 8192..24576 output buffer
  ;; 65536..131072 read buffer
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

  ;; One splitmix64 step: x += golden gamma, then the variant-13 finaliser.
  (func $mix (param $x i64) (result i64)
    (local $z i64)
    (local.set $z (i64.add (local.get $x) (i64.const 0x9e3779b97f4a7c15)))
    (local.set $z (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 30)))
                           (i64.const 0xbf58476d1ce4e5b9)))
    (local.set $z (i64.mul (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 27)))
                           (i64.const 0x94d049bb133111eb)))
    (i64.xor (local.get $z) (i64.shr_u (local.get $z) (i64.const 31))))

  (func (export "_start")
    (local $state i64) (local $rounds i64) (local $n i32) (local $p i32) (local $end i32)
    (local $shift i32) (local $nib i32)
    (local.set $rounds (call $arg1_u64))
    (if (i64.lt_s (local.get $rounds) (i64.const 0)) (then (local.set $rounds (i64.const 1000))))
    ;; FNV-1a 64 over stdin
    (local.set $state (i64.const 0xcbf29ce484222325))
    (block $eof
      (loop $more
        (i32.store (i32.const 0) (i32.const 65536))
        (i32.store (i32.const 4) (i32.const 65536))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 2))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $p (i32.const 65536))
        (local.set $end (i32.add (i32.const 65536) (local.get $n)))
        (loop $byte
          (local.set $state
            (i64.mul (i64.xor (local.get $state) (i64.load8_u (local.get $p)))
                     (i64.const 0x100000001b3)))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br_if $byte (i32.lt_u (local.get $p) (local.get $end))))
        (br $more)))
    (block $done
      (loop $round
        (br_if $done (i64.eqz (local.get $rounds)))
        (local.set $state (call $mix (local.get $state)))
        (local.set $rounds (i64.sub (local.get $rounds) (i64.const 1)))
        (br $round)))
    ;; 16 hex digits, most significant first
    (local.set $shift (i32.const 60))
    (loop $hex
      (local.set $nib (i32.wrap_i64 (i64.and (i64.shr_u (local.get $state) (i64.extend_i32_u (local.get $shift)))
                                             (i64.const 15))))
      (call $putc (i32.add (local.get $nib)
                           (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $nib) (i32.const 10)))))
      (local.set $shift (i32.sub (local.get $shift) (i32.const 4)))
      (br_if $hex (i32.ge_s (local.get $shift) (i32.const 0))))
    (call $putc (i32.const 10))
    (call $flush))
)
