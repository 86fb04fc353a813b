//! The `skyhop` command line.

fn main() {}
