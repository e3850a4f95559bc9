#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::canonical(data));
