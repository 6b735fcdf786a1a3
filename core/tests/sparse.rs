//! The sparse rule on its own: every combination of data and object, and
//! the zero checks under it.

use sheepdog_core::sparse::{decide, is_zero, trim_zeros, Action, Under, BLOCK};

#[test]
fn every_combination_of_data_and_object() {
    let under = |allocated, whole_object| Under {
        allocated,
        whole_object,
    };
    // Data: always written; trimmed only into an unallocated object.
    assert_eq!(
        decide(false, under(false, false)),
        Action::Write { trim: true }
    );
    assert_eq!(
        decide(false, under(false, true)),
        Action::Write { trim: true }
    );
    assert_eq!(
        decide(false, under(true, false)),
        Action::Write { trim: false }
    );
    assert_eq!(
        decide(false, under(true, true)),
        Action::Write { trim: false }
    );
    // Zeros: nothing where nothing is, a release of a whole object,
    // written zeros over part of one.
    assert_eq!(decide(true, under(false, false)), Action::Skip);
    assert_eq!(decide(true, under(false, true)), Action::Skip);
    assert_eq!(decide(true, under(true, true)), Action::Release);
    assert_eq!(decide(true, under(true, false)), Action::WriteZeros);
}

#[test]
fn zero_detection() {
    assert!(is_zero(&[0; 100]));
    assert!(is_zero(&[]));
    for at in [0, 15, 16, 99] {
        let mut b = [0u8; 100];
        b[at] = 1;
        assert!(!is_zero(&b), "a 1 at {at}");
    }
}

#[test]
fn trimming_keeps_the_blocks_from_the_first_to_the_last_with_data() {
    let mut buf = vec![0u8; 10 * BLOCK + 100];
    assert_eq!(trim_zeros(&buf), (0, 0));
    buf[3 * BLOCK + 7] = 1;
    assert_eq!(trim_zeros(&buf), (3 * BLOCK, BLOCK));
    buf[6 * BLOCK] = 1;
    assert_eq!(trim_zeros(&buf), (3 * BLOCK, 4 * BLOCK));
    // The short last block ends at the end of the buffer.
    buf[10 * BLOCK + 50] = 1;
    assert_eq!(trim_zeros(&buf), (3 * BLOCK, 7 * BLOCK + 100));
    buf[0] = 1;
    assert_eq!(trim_zeros(&buf), (0, buf.len()));
}
