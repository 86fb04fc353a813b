//! `skyhop-flooder`: the flood test's hostile client as a process of its
//! own (see `skyhop_tests::flooder`); it stops when its stdin ends.
//!
//! Usage: `skyhop-flooder --to ADDR [--for-secs 60] [--identities 4]
//! [--attempts 300] [--chats 1000] [--retry-ms 100]` (ADDR ends in `/p2p/<peer id>`).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use skyhop_tests::flooder::{self, FloodOptions};

fn parse(mut it: impl Iterator<Item = String>) -> Result<FloodOptions, String> {
    let mut options = FloodOptions::default();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--to" => options.to = value.clone(),
            "--for-secs" => options.for_secs = number()?,
            "--identities" => options.identities = number()?,
            "--attempts" => options.attempts = number()?,
            "--chats" => options.chats = number()?,
            "--retry-ms" => options.retry_ms = number()?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.to.is_empty() {
        return Err("--to ADDR is required".into());
    }
    Ok(options)
}

fn main() {
    let options = parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("skyhop-flooder: {e}");
        std::process::exit(2)
    });
    // The test that started us ends our stdin to stop us.
    let stop = Arc::new(AtomicBool::new(false));
    let on_eof = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        on_eof.store(true, Ordering::Relaxed);
    });
    skyhop_tests::client_runtime().block_on(flooder::run(options, stop));
}
