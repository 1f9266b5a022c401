//! Writing a command's output to standard output. A reader that goes away (`pinnacle
//! ticks | head`) ends the command quietly with success, as Unix tools do, instead of a
//! panic: Rust ignores SIGPIPE, so `println!` would panic on the closed pipe.

use std::io::Write as _;

/// Writes `text` and a line break, then flushes (so a follower sees each line at once).
pub fn line(text: &str) {
    text_out(&format!("{text}\n"));
}

/// Writes `text` as it is, then flushes.
pub fn text_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            std::process::exit(1);
        }
    }
}
