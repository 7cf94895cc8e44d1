//! Writes the envelope JSON of every inbound fixture (as the gateway would publish it) into a
//! directory: the seeds of the `envelope_decode` target. Run by `fuzz/seed.sh`.
//!
//! Usage: `envelopes <fixtures/inbound dir> <out dir>`

use wxoa_wire::envelope::Envelope;
use wxoa_wire::inbound::Inbound;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [fixtures, out] = args.as_slice() else {
        eprintln!("usage: envelopes <fixtures/inbound dir> <out dir>");
        std::process::exit(2);
    };
    std::fs::create_dir_all(out).expect("out dir");
    let mut written = 0;
    for entry in std::fs::read_dir(fixtures).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let xml = std::fs::read(&path).expect("fixture");
        let Ok(message) = Inbound::parse(&xml) else {
            continue; // the safe- and compatible-mode bodies
        };
        let env = Envelope::new("wx2c2769f8efd9abc2", 1_700_000_000_123, message);
        let name = path.file_stem().expect("a name").to_string_lossy();
        std::fs::write(format!("{out}/{name}.json"), env.to_json()).expect("written");
        written += 1;
    }
    println!("envelope_decode: {written} envelopes from {fixtures}");
}
