//! Long deterministic simulation runs: `sim [--seed N] [--seeds K] [--ops N] [--calm]`.
//! Runs K seeds from N, each for the given number of operations, with every
//! fault on (or none with --calm), and prints what happened. A failure
//! prints the seed and the last operations, and exits non-zero.

use std::time::Instant;

use sheepdog_tests::sim::{Config, Workload};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => {
                eprintln!("error: {name} needs a number");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = arg(&args, "--seed", 1);
    let seeds = arg(&args, "--seeds", 1);
    let ops = arg(&args, "--ops", 100_000);
    let calm = args.iter().any(|a| a == "--calm");
    let start = Instant::now();
    let mut total = 0;
    for s in seed..seed + seeds {
        let mut cfg = Config::stormy(s);
        if calm {
            cfg.faults = Default::default();
            cfg.external_snapshots = 0;
            cfg.disconnects = 0;
        }
        let mut w = Workload::new(cfg);
        w.run(ops);
        total += w.stats.ops;
        println!("seed {s}: {:?} {:?}", w.stats, w.wire.stats);
    }
    println!(
        "{total} operations over {seeds} seeds in {:.1} s, every read matched the model",
        start.elapsed().as_secs_f64()
    );
}
