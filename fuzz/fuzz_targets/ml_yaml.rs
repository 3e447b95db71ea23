//! `az ml` YAML files (workspace, compute, datastore, data) and the job bodies
//! the SDK sends as JSON.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (u8, &str)| {
    let (kind, text) = input;
    let sets: [(String, String); 0] = [];
    let _ = match kind % 5 {
        0 => keyless_ml::yaml::workspace("f.yml", text, &sets).map(|_| ()),
        1 => keyless_ml::yaml::compute("f.yml", text, &sets).map(|_| ()),
        2 => keyless_ml::yaml::datastore("f.yml", text, &sets).map(|_| ()),
        3 => keyless_ml::yaml::data("f.yml", text, &sets).map(|_| ()),
        _ => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| keyless_core::Error::invalid(e.to_string()))
            .and_then(|v| keyless_ml::job::Job::from_rest(&v).map(|_| ())),
    };
});
