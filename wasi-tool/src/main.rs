//! sheep-tool: import, export, snapshot and clone Sheepdog volumes.

fn main() {
    eprintln!(
        "sheep-tool {}: commands are not implemented yet",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
