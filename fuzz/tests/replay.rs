//! Replays every saved input through its target's checks, without libFuzzer (plain
//! `cargo test`, stable): the minimized crashes in `regressions/<target>/` (each one a bug that
//! was fixed) and, when `fuzz/seed.sh` has run, the seed corpora in `corpus/<target>/`.

use std::path::Path;

fn replay(dir: &Path, target: &str, check: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("readable directory").path();
        if !path.is_file() || path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).expect("readable input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails again", path.display());
        count += 1;
    }
    count
}

#[test]
fn regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for (target, check) in wxoa_fuzz::TARGETS {
        let n = replay(&dir, target, *check);
        println!("{target}: {n} regression inputs");
    }
}

#[test]
fn seeds_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, check) in wxoa_fuzz::TARGETS {
        let n = replay(&dir, target, *check);
        println!("{target}: {n} corpus inputs");
    }
}
