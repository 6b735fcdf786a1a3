//! Moving a VDI's bytes between the cluster and a file or stream: the
//! pipeline import and export share (`pipeline`, with the import's input
//! read in chunks: `reader`), the few reads or writes at a time of the
//! commands that go object by object (`pipe`), how requests are cut
//! (`requests`), progress, `--verify` by CRC32 (`verify`), and the diff
//! streams out of a VDI and into one (`diff_export`, `diff_import`).

pub mod diff_export;
pub mod diff_import;
pub mod pipe;
pub mod pipeline;
pub mod progress;
pub mod reader;
pub mod requests;
pub mod verify;
