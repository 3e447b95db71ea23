//! The structured-message (CRC-64 segments) unframer, fed in chunks of any size.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&[u8], u16, u8)| {
    let (body, content, chunk) = input;
    keyless_server::fuzzing::structured_message(body, u64::from(content), usize::from(chunk));
});
