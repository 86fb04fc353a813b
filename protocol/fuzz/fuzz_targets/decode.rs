//! Feeds arbitrary bytes to both frame decoders. Bytes from a peer must never
//! panic a node, and whatever a node accepts it must be able to send on:
//! an accepted message re-encodes to a frame no longer than the input
//! (the encoder writes the shortest varints; the decoder also accepts
//! longer ones) that decodes to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhop_protocol::{decode_frame, encode, FrameDecoder, Message};

/// The second trip: what was accepted is sent again and read back unchanged.
fn round_trips(msg: &Message, input_len: usize) {
    let again = encode(msg).expect("an accepted message can be sent again");
    assert!(again.len() <= input_len, "re-encoding grew the frame");
    assert_eq!(decode_frame(&again).as_ref(), Ok(msg));
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the stream's chunk size, so the fuzzer also
    // explores how frames are split; the rest is the stream.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };

    if let Ok(msg) = decode_frame(stream) {
        round_trips(&msg, stream.len());
    }

    let chunk = usize::from(chunk).max(1);
    let mut dec = FrameDecoder::new();
    'stream: for piece in stream.chunks(chunk) {
        dec.push(piece);
        // Each message takes at least five bytes, so this ends.
        loop {
            let pending = dec.buffered();
            match dec.next_message() {
                Ok(Some(msg)) => round_trips(&msg, pending - dec.buffered()),
                Ok(None) => break,
                // A stream cannot be resynchronised after an error: a node
                // drops the peer, and so does this target.
                Err(_) => break 'stream,
            }
        }
    }
});
