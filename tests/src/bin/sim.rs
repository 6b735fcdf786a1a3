//! Long deterministic simulation runs:
//! `sim [--seed N] [--seeds K] [--ops N] [--calm] [--hostile [--hostile-rate PER_MILLE]]`.
//! Runs K seeds from N, each for the given number of operations, with every
//! fault on (or none with --calm), and prints what happened. --hostile also
//! answers about one request in a hundred (or `--hostile-rate` per mille)
//! as a hostile or broken server would; with --calm, those are the only
//! faults. Operations may then end in errors, but every read must still
//! match what the model knows, and every write reported done must be on the
//! server. A failure prints the seed and the last operations, and exits
//! non-zero.

use std::time::Instant;

use sheepdog_tests::sim::wire::FaultRates;
use sheepdog_tests::sim::{Config, Stats, Workload};

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
    let hostile = args.iter().any(|a| a == "--hostile");
    let rate = arg(
        &args,
        "--hostile-rate",
        Config::hostile(0).faults.hostile.into(),
    );
    let rate = u32::try_from(rate).unwrap_or(u32::MAX);
    let start = Instant::now();
    let mut total = Stats::default();
    for s in seed..seed + seeds {
        let mut cfg = if hostile {
            Config::hostile(s)
        } else {
            Config::stormy(s)
        };
        if hostile {
            cfg.faults.hostile = rate;
        }
        if calm {
            cfg.faults = FaultRates {
                hostile: cfg.faults.hostile,
                ..FaultRates::default()
            };
            cfg.external_snapshots = 0;
            cfg.disconnects = 0;
        }
        let mut w = Workload::new(cfg);
        w.run(ops);
        total.add(&w.stats);
        println!("seed {s}: {:?} {:?}", w.stats, w.wire.stats);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ops = total.ops;
    if hostile {
        println!(
            "{ops} operations over {seeds} seeds in {elapsed:.1} s, every read matched the model \
             on the bytes it knows; {} operations ended in errors ({} reads, {} writes and discards, \
             {} control operations; besides, {} writes refused after a failed index write), and every \
             write reported done is on the server",
            total.failed(),
            total.reads_failed,
            total.writes_failed,
            total.controls_failed,
            total.writes_refused,
        );
    } else {
        println!(
            "{ops} operations over {seeds} seeds in {elapsed:.1} s, every read matched the model"
        );
    }
}
