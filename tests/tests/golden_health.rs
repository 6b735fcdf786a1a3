//! Golden tests for the requests a check of a cluster's health sends and
//! the replies it reads, from real Sheepdog 1.0 conversations: `dog
//! cluster info` and `dog vdi lock list` as recorded in
//! `tests/data/traces/`, and `dog vdi check` on a 6-node cluster at epoch
//! 6, its GET_HASH bytes taken with strace (the digest in the reply was
//! the SHA-1 of the inode file in the node's store, checked by hand).

use sheepdog_core::epoch_log::EpochLog;
use sheepdog_core::oid::Oid;
use sheepdog_core::vdi_state::{LockState, VdiStates, FIRST_BUF_LEN};
use sheepdog_core::wire::{Opcode, Request, Response};
use sheepdog_tests::trace::{hex, load_named};

#[test]
fn get_hash_is_what_dog_vdi_check_sends_and_its_reply_carries_the_sha1() {
    let sent = hex("0ab400000000000000000000000000000000000026f53b80000000000000000000000000060000000000000000000000");
    assert_eq!(
        Request::get_hash(0, Oid(0x803b_f526_0000_0000), 6)
            .to_bytes()
            .to_vec(),
        sent
    );
    let data = hex("0ab400000000000000000000000000000200000026f53b00000000000000000000000000060000000000000000000000");
    assert_eq!(
        Request::get_hash(0, Oid(0x003b_f526_0000_0002), 6)
            .to_bytes()
            .to_vec(),
        data
    );
    let reply = hex("00b4000006000000000000000000000000000000000000009f2120c8df5e91a587a238f702f2d6dc00d898a500000000");
    let rsp = Response::parse_bytes(&reply).unwrap();
    assert_eq!(
        (rsp.opcode, rsp.epoch, rsp.data_length),
        (Opcode::GetHash, 6, 0)
    );
    assert!(rsp.result.is_success());
    assert_eq!(
        rsp.digest().unwrap().to_vec(),
        hex("9f2120c8df5e91a587a238f702f2d6dc00d898a5")
    );
    assert_eq!(rsp.to_bytes().to_vec(), reply, "re-encodes byte for byte");
}

#[test]
fn dog_cluster_info_reads_the_epoch_log_the_core_parses() {
    let t = load_named("01_cluster_info");
    let x = t
        .exchanges()
        .into_iter()
        .rfind(|x| x.request.header[1] == 0x87)
        .unwrap();
    let req = Request::parse_bytes(&x.request.header).unwrap();
    assert_eq!(req.stat_cluster_nodes(), Some(3));
    assert_eq!(
        Request::stat_cluster(req.id, req.data_length, 3).to_bytes(),
        x.request.header
    );
    let log: Vec<_> = EpochLog::parse(&x.response.payload, 3)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(log.len(), 1);
    let e = &log[0];
    assert_eq!((e.epoch, e.nr_copies, e.copy_policy), (1, 3, 0));
    assert_eq!(e.driver(), b"plain");
    // dog printed "Cluster created at Wed Nov 25 12:06:49 2026" and the
    // epoch at "2026-11-25 12:06:49" (UTC).
    assert_eq!(e.ctime >> 32, 1_795_608_409);
    assert_eq!(e.time, 1_795_608_409);
    let nodes: Vec<_> = e.nodes.unwrap().iter().collect();
    let shown: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{}", n.addr, n.nr_vnodes))
        .collect();
    assert_eq!(
        shown,
        [
            "127.0.0.1:7000:128",
            "127.0.0.1:7001:128",
            "127.0.0.1:7002:128"
        ]
    );
    assert!(t.command.contains("cluster info"));
}

#[test]
fn dog_vdi_lock_list_reads_the_vdi_states_the_core_parses() {
    let t = load_named("19_vdi_lock_list");
    let x = t
        .exchanges()
        .into_iter()
        .find(|x| x.request.header[1] == 0xAB)
        .unwrap();
    assert_eq!(
        Request::get_vdi_copies(0, FIRST_BUF_LEN as u32).to_bytes(),
        x.request.header
    );
    let states: Vec<_> = VdiStates::parse(&x.response.payload).unwrap().collect();
    assert_eq!(states.len(), 4);
    assert_eq!(states[0].vid(), 0x61_2398);
    assert!(states
        .iter()
        .all(|s| s.lock_state() == LockState::Unlocked && s.nr_copies() == 3));
    assert!(states.iter().all(|s| s.block_size_shift() == 22));
}
