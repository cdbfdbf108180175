// Written by `bash scripts/fuzz.sh --seed`; the body is trellis_fuzz's.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (trellis_fuzz::target("allowed_signers").expect("a target").run)(data);
});
