//! Replays every saved fuzz input (`fuzz/corpus/<target>/`: the seeds and every input the
//! fuzzer kept, crashes found and fixed among them) through its target. No new fuzzing:
//! `scripts/fuzz.sh` does that.

use std::path::PathBuf;

fn corpus_root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../fuzz/corpus")
}

#[test]
fn every_saved_input_passes_its_target() {
    let root = corpus_root();
    let mut missing = Vec::new();
    let mut replayed = 0;
    for target in trellis_fuzz::TARGETS {
        let dir = root.join(target.name);
        let mut inputs: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.expect("a corpus entry").path()).collect(),
            Err(_) => Vec::new(),
        };
        if inputs.is_empty() {
            missing.push(target.name);
            continue;
        }
        inputs.sort();
        for input in inputs {
            let data = std::fs::read(&input).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| (target.run)(&data));
            assert!(
                outcome.is_ok(),
                "{} fails on {} (replay it with `bash scripts/fuzz.sh {} --replay`)",
                target.name,
                input.display(),
                target.name
            );
            replayed += 1;
        }
    }
    assert!(
        missing.is_empty(),
        "no saved inputs for {missing:?} under {}: run `bash scripts/fuzz.sh --seed`",
        root.display()
    );
    assert!(replayed > 0);
}

#[test]
fn every_target_has_a_libfuzzer_wrapper() {
    let dir = corpus_root().join("../fuzz_targets");
    for target in trellis_fuzz::TARGETS {
        let file = dir.join(format!("{}.rs", target.name));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|_| {
            panic!(
                "{} is missing: `bash scripts/fuzz.sh --seed` writes it",
                file.display()
            )
        });
        assert!(
            text.contains(&format!("trellis_fuzz::target(\"{}\")", target.name)),
            "{} does not run its target",
            file.display()
        );
    }
}
