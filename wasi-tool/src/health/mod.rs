//! Whether the data is whole: every copy of every object where sheep's
//! placement puts it (`check`, with repair), the objects nothing reaches
//! (`orphans`), over per-node connections that keep many requests in
//! flight (`peers`), with the cluster's nodes and placement (`layout`)
//! and each VDI's objects from its inode (`objects`).

pub mod check;
pub mod layout;
pub mod objects;
pub mod orphans;
pub mod peers;
pub mod report;
