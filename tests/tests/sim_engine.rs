//! The engine against the pure reference server: scenarios named after what
//! they prove, and seeded random runs with every fault on.

use sheepdog_tests::sim::{Config, Workload};

#[test]
fn random_workload_without_faults_matches_the_model() {
    let mut cfg = Config::stormy(1);
    cfg.faults = Default::default();
    cfg.external_snapshots = 0;
    cfg.disconnects = 0;
    let mut w = Workload::new(cfg);
    w.run(2_000);
    assert!(w.stats.reads_checked > 300, "{:?}", w.stats);
}

#[test]
fn random_workload_with_every_fault_matches_the_model() {
    for seed in 1..=4 {
        let mut w = Workload::new(Config::stormy(seed));
        w.run(1_500);
        let s = w.stats;
        assert!(s.reads_checked > 200, "{s:?}");
        assert!(
            w.wire.stats.transient > 0
                && w.wire.stats.disconnects > 0
                && w.wire.stats.node_switches > 0
                && w.wire.stats.unapplied > 0,
            "{:?}",
            w.wire.stats
        );
    }
}
