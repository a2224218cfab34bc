//! No input file makes the parsers panic: thousands of seeded mutations of the shipped
//! scenarios, models and bad fixtures each yield a value or a located error. This is the
//! deterministic, every-build cousin of the cargo-fuzz targets in fuzz/.

use std::path::{Path, PathBuf};

use fleetsim::dialect::Registry;
use fleetsim::model::{ChaCha8Rng, Rng, draw};
use fleetsim::scenario::{self, ModelSet};
use rand_chacha::rand_core::SeedableRng;

/// Tokens that sit at the edges of TOML and of our unit grammar.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    ".",
    "\n",
    "#",
    "%",
    "/s",
    "ms",
    "d",
    "-",
    "0",
    "1e999",
    "99999999999999999999",
    "nan",
    "inf",
    "-1",
    "0.0",
    "\"\"",
    "'''",
    "\"\"\"",
    "\u{0}",
    "é",
    "\u{1F600}",
    "true",
    "1979-05-27T07:32:00Z",
    "phase",
    "[[phase]]",
    "action = \"ota\"",
    "share",
    "\"100%\"",
    "\"0s\"",
    "\"999999d\"",
    "\"1/h\"",
    "\"0.0000000001/h\"",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn toml_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("seed folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("seed file"))
        .collect()
}

/// One random edit of `text`, on character boundaries so the result stays a `&str`.
fn mutate(text: &str, rng: &mut ChaCha8Rng) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = draw::below(rng, chars.len() as u64 + 1) as usize;
    let len = draw::below(rng, 16) as usize;
    let end = (at + len).min(chars.len());
    let token = TOKENS[draw::below(rng, TOKENS.len() as u64) as usize];
    let (head, tail) = (&chars[..at], &chars[end..]);
    let mut out: String = head.iter().collect();
    match draw::below(rng, 4) {
        0 => {}                   // delete a run
        1 => out.push_str(token), // replace a run with a token
        2 => {
            out.extend(&chars[at..end]); // insert a token
            out.push_str(token);
        }
        _ => out.extend(&chars[at..end]), // truncate after the run
    }
    if draw::below(rng, 4) != 3 {
        out.extend(tail);
    }
    out
}

fn models() -> ModelSet {
    scenario::load_models(&repo().join("device-models")).expect("shipped models load")
}

#[test]
fn mutated_scenarios_never_panic() {
    let models = models();
    let mut seeds = toml_files(&repo().join("scenarios"));
    seeds.extend(toml_files(&repo().join("sim/tests/fixtures/bad")));
    let mut rng = ChaCha8Rng::seed_from_u64(0x5CE7_A210);
    let mut rejected = 0;
    for seed in &seeds {
        for _ in 0..300 {
            let mut text = mutate(seed, &mut rng);
            if draw::chance(&mut rng, 0.5) {
                text = mutate(&text, &mut rng);
            }
            let result = scenario::parse_scenario(
                Path::new("m.toml"),
                &text,
                repo().join("device-models"),
                &models,
                &Registry,
            );
            if let Err(e) = result {
                rejected += 1;
                let message = e.to_string();
                assert!(message.starts_with("m.toml:"), "every error is located: {message}");
            }
        }
    }
    assert!(rejected > 1000, "mutations mostly break files ({rejected} rejected)");
}

#[test]
fn mutated_models_never_panic() {
    let mut seeds = toml_files(&repo().join("device-models"));
    seeds.extend(toml_files(&repo().join("sim/tests/fixtures/bad-models")));
    let mut rng = ChaCha8Rng::seed_from_u64(0xD0DE1);
    for seed in &seeds {
        for _ in 0..300 {
            let text = mutate(&mutate(seed, &mut rng), &mut rng);
            if let Err(e) = scenario::parse_model(Path::new("temp-sensor.toml"), &text) {
                assert!(e.to_string().starts_with("temp-sensor.toml:"), "{e}");
            }
        }
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let models = models();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..2000 {
        let len = draw::below(&mut rng, 200) as usize;
        let text: String = (0..len)
            .map(|_| {
                let token = TOKENS[draw::below(&mut rng, TOKENS.len() as u64) as usize];
                if draw::chance(&mut rng, 0.5) {
                    token.to_owned()
                } else {
                    ((rng.next_u32() % 95 + 32) as u8 as char).to_string()
                }
            })
            .collect();
        let _ = scenario::parse_scenario(
            Path::new("r.toml"),
            &text,
            repo().join("device-models"),
            &models,
            &Registry,
        );
        let _ = scenario::parse_model(Path::new("r.toml"), &text);
    }
}
