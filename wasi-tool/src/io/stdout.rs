//! Lines a command prints on stdout for a reader that may stop reading:
//! `sheep-tool tree | head` closes the pipe early, and what is not read
//! any more is dropped instead of failing (or panicking) the command.

use std::fmt;
use std::io::{self, Write};

/// Print `args` and a newline.
pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stdout().lock(), "{args}");
}

/// Print `text` as it is.
pub fn text(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}
