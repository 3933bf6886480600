#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dura_history::fuzzing::state_machine(data));
