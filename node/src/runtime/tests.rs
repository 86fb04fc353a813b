//! Real libp2p nodes on 127.0.0.1, each test bounded by a timeout.
