use crate::serial::*;
use crate::Error;

fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> Vec<Result<Vec<u8>, Error>> {
    let mut out = Vec::new();
    dec.push(bytes, &mut out);
    out
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn crc_known_answer() {
    assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    assert_eq!(crc16_xmodem(b""), 0);
}

#[test]
fn matches_smpclient_encoder_output() {
    // smp.packet.encode(b"Hello, world!") from the Python smp package's docs
    assert_eq!(
        encode_packet(b"Hello, world!"),
        b"\x06\tAA9IZWxsbywgd29ybGQhet4=\n".to_vec()
    );
}

#[test]
fn decodes_smpclient_multi_frame_example() {
    // smp.packet.decode() docstring example: 15 frames of an image upload request
    let frames = [
        "06094148344b41414230414147610a",
        "041441615a6a6247567544574e760a",
        "04145a6d59594b6d4e7a6147464d0a",
        "041464484a3163335167625755670a",
        "0414596e4a765a475268644746590a",
        "04145141414241674d45425159480a",
        "041443416b4b4377774e446738510a",
        "041445524954464255574678675a0a",
        "04144768736348523466494345690a",
        "04144979516c4a69636f4b536f720a",
        "04144c4330754c7a41784d6a4d300a",
        "04144e5459334f446b364f7a77390a",
        "0414506a396c615731685a3255410a",
        "04145a3356775a334a685a4758300a",
        "04147134673d0a",
    ];
    let bytes: Vec<u8> = frames.iter().flat_map(|f| hex(f)).collect();
    let mut dec = Decoder::new(512);
    let out = decode_all(&mut dec, &bytes);
    assert_eq!(out.len(), 1);
    let pkt = out[0].as_ref().unwrap();
    assert_eq!(pkt.len(), 124);
    assert_eq!(&pkt[..8], &[0x0a, 0x00, 0x00, 0x74, 0x00, 0x01, 0x9a, 0x01]);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn frames_respect_the_127_byte_limit_and_markers() {
    for len in [
        0usize, 1, 2, 3, 8, 88, 89, 90, 91, 92, 93, 94, 200, 1000, 4000,
    ] {
        let pkt = sample(len);
        let enc = encode_packet(&pkt);
        let lines: Vec<&[u8]> = enc.split_inclusive(|b| *b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            assert!(
                line.len() <= MAX_FRAME,
                "len {len}: frame {i} is {} bytes",
                line.len()
            );
            assert_eq!(&line[..2], if i == 0 { &MARKER_PKT } else { &MARKER_FRAG });
            assert_eq!(*line.last().unwrap(), b'\n');
            assert_eq!((line.len() - 3) % 4, 0, "each frame is whole base64 quads");
        }
        let mut dec = Decoder::new(4096);
        let out = decode_all(&mut dec, &enc);
        assert_eq!(out, vec![Ok(pkt)], "len {len}");
    }
}

#[test]
fn round_trip_byte_by_byte_and_back_to_back() {
    let a = sample(300);
    let b = sample(9);
    let mut stream = encode_packet(&a);
    stream.extend(encode_packet(&b));
    let mut dec = Decoder::new(512);
    let mut out = Vec::new();
    for byte in &stream {
        dec.push(std::slice::from_ref(byte), &mut out);
    }
    assert_eq!(out, vec![Ok(a), Ok(b)]);
}

#[test]
fn console_noise_is_skipped() {
    let pkt = sample(150);
    let enc = encode_packet(&pkt);
    let lines: Vec<&[u8]> = enc.split_inclusive(|b| *b == b'\n').collect();
    let mut stream = b"*** Booting Zephyr OS ***\r\n[00:00:00.010] <inf> app: hello\n\n".to_vec();
    stream.extend(b"uart:~$ "); // prompt without newline right before the first frame
    stream.extend_from_slice(lines[0]);
    stream.extend(b"[00:00:01.000] <wrn> log line between frames\r\n");
    for l in &lines[1..] {
        stream.extend_from_slice(l);
    }
    stream.extend(b"\x04 not a marker\n\x06 nor this\n");
    let mut dec = Decoder::new(512);
    assert_eq!(decode_all(&mut dec, &stream), vec![Ok(pkt.clone())]);
    // CRLF line endings
    let crlf: Vec<u8> = enc
        .iter()
        .flat_map(|b| {
            if *b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![*b]
            }
        })
        .collect();
    assert_eq!(decode_all(&mut dec, &crlf), vec![Ok(pkt)]);
}

#[test]
fn bad_crc_then_resync() {
    let pkt = sample(40);
    let mut enc = encode_packet(&pkt);
    // flip one base64 character inside the packet data (keep it valid base64)
    let pos = 10;
    enc[pos] = if enc[pos] == b'A' { b'B' } else { b'A' };
    enc.extend(encode_packet(&pkt));
    let mut dec = Decoder::new(512);
    let out = decode_all(&mut dec, &enc);
    assert_eq!(out.len(), 2);
    assert!(matches!(out[0], Err(Error::BadCrc { .. })), "{:?}", out[0]);
    assert_eq!(out[1], Ok(pkt));
}

#[test]
fn bad_base64_then_resync() {
    let pkt = sample(200);
    let mut stream = b"\x06\x09AB$D\n".to_vec();
    // a multi-frame packet whose second frame is corrupted: one error, continuations skipped
    let enc = encode_packet(&pkt);
    let mut lines: Vec<Vec<u8>> = enc
        .split_inclusive(|b| *b == b'\n')
        .map(|l| l.to_vec())
        .collect();
    lines[1][5] = b'!';
    for l in &lines {
        stream.extend_from_slice(l);
    }
    stream.extend(encode_packet(&pkt));
    let mut dec = Decoder::new(512);
    let out = decode_all(&mut dec, &stream);
    assert_eq!(out, vec![Err(Error::Base64), Err(Error::Base64), Ok(pkt)]);
}

#[test]
fn oversize_packets_are_refused_then_resync() {
    let big = sample(600);
    let small = sample(20);
    let mut stream = encode_packet(&big);
    stream.extend(encode_packet(&small));
    let mut dec = Decoder::new(512);
    let out = decode_all(&mut dec, &stream);
    assert_eq!(
        out,
        vec![
            Err(Error::TooLarge { len: 600, max: 512 }),
            Ok(small.clone())
        ]
    );
    // an endless line is cut, reported once, and does not grow memory without bound
    let mut dec = Decoder::new(64);
    let mut long = MARKER_PKT.to_vec();
    long.extend(std::iter::repeat_n(b'A', 100_000));
    long.push(b'\n');
    long.extend(encode_packet(&small));
    assert_eq!(
        decode_all(&mut dec, &long),
        vec![Err(Error::FrameTooLong), Ok(small)]
    );
}

#[test]
fn length_field_errors() {
    use base64::Engine as _;
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    let mut dec = Decoder::new(512);
    // length 1 cannot even hold the CRC
    let line = [&MARKER_PKT[..], b64(&[0, 1, 0]).as_bytes(), b"\n"].concat();
    assert_eq!(decode_all(&mut dec, &line), vec![Err(Error::BadLength(1))]);
    // more data than announced
    let line = [&MARKER_PKT[..], b64(&[0, 2, 0, 0, 9, 9]).as_bytes(), b"\n"].concat();
    assert_eq!(decode_all(&mut dec, &line), vec![Err(Error::Overrun)]);
    // a first frame with a single byte
    let line = [&MARKER_PKT[..], b64(&[0]).as_bytes(), b"\n"].concat();
    assert_eq!(
        decode_all(&mut dec, &line),
        vec![Err(Error::Truncated { len: 1 })]
    );
    // empty packet (length 2 = CRC only) with the right CRC is delivered as empty
    let line = [&MARKER_PKT[..], b64(&[0, 2, 0, 0]).as_bytes(), b"\n"].concat();
    assert_eq!(decode_all(&mut dec, &line), vec![Ok(vec![])]);
}

#[test]
fn interrupted_packet_is_reported() {
    let pkt = sample(200);
    let enc = encode_packet(&pkt);
    let first = enc
        .split_inclusive(|b| *b == b'\n')
        .next()
        .unwrap()
        .to_vec();
    let mut stream = first;
    stream.extend(encode_packet(&pkt));
    let mut dec = Decoder::new(512);
    assert_eq!(
        decode_all(&mut dec, &stream),
        vec![Err(Error::Interrupted), Ok(pkt)]
    );
}

#[test]
fn stray_continuations_are_ignored() {
    let pkt = sample(10);
    let mut stream = b"\x04\x14AAAA\n".to_vec();
    stream.extend(encode_packet(&pkt));
    let mut dec = Decoder::new(512);
    assert_eq!(decode_all(&mut dec, &stream), vec![Ok(pkt)]);
}

#[test]
fn too_large_for_length_field() {
    assert!(matches!(
        try_encode_packet(&vec![0; 65534]),
        Err(Error::TooLarge { .. })
    ));
    assert!(encode_packet(&vec![0; 65534]).is_empty());
    assert!(try_encode_packet(&vec![0; 65533]).is_ok());
}
