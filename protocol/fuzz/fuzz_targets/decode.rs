//! Feeds arbitrary bytes to both frame decoders. Bytes from a peer must never
//! panic a node, and whatever a node accepts it must be able to send on:
//! an accepted message re-encodes to a frame no longer than the input
//! (the encoder writes the shortest varints; the decoder also accepts
//! longer ones) that decodes to the same message. A routed frame's header,
//! read the way a relay reads it, agrees with the decoder, and a sealed
//! chat opens or is refused without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhop_protocol::{
    decode_frame, encode, envelope, Body, FrameDecoder, Identity, Message, FRAME_HEADER_LEN,
};

/// The second trip: what was accepted is sent again and read back unchanged.
fn round_trips(msg: &Message, input_len: usize) {
    let again = encode(msg).expect("an accepted message can be sent again");
    assert!(again.len() <= input_len, "re-encoding grew the frame");
    assert_eq!(decode_frame(&again).as_ref(), Ok(msg));
    if let Message::Routed(p) = msg {
        let h = envelope::read_header(&again[FRAME_HEADER_LEN..]).expect("a routed frame");
        assert_eq!((h.dst, h.src, h.id, h.ttl, h.hops), (p.dst, p.src, p.id, p.ttl, p.hops));
        if let Body::Chat(sealed) = &p.body {
            // The vectors' bob, so that the seed corpus's chat opens.
            let _ = Identity::from_secret([2; 32]).open_chat(sealed);
        }
    }
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
