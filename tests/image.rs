//! predict's image preparation: PNG decoding of each colour type, padding to a square and
//! area resizing, checked against values worked out by hand.

#[path = "common/png_file.rs"]
mod png_file;
use gpu_train::image::{Gray, decode_png};
use png_file::png_bytes;

#[test]
fn decodes_grey_colour_and_alpha() {
    let grey = decode_png(&png_bytes(2, 1, png::ColorType::Grayscale, &[10, 200]), 0.0).unwrap();
    assert_eq!((grey.width, grey.height, grey.pixels.clone()), (2, 1, vec![10.0, 200.0]));
    let rgb = decode_png(&png_bytes(1, 1, png::ColorType::Rgb, &[255, 0, 0]), 0.0).unwrap();
    assert!((rgb.pixels[0] - 0.299 * 255.0).abs() < 1e-3, "{:?}", rgb.pixels);
    // Half-transparent white over a white background stays white; over black it is half grey.
    let rgba = png_bytes(1, 1, png::ColorType::Rgba, &[255, 255, 255, 128]);
    assert!((decode_png(&rgba, 255.0).unwrap().pixels[0] - 255.0).abs() < 1e-3);
    assert!((decode_png(&rgba, 0.0).unwrap().pixels[0] - 128.0).abs() < 1e-3);
    for bad in [&b""[..], b"\x89PNG\r\n\x1a\n", b"GIF89a"] {
        let err = decode_png(bad, 0.0).unwrap_err();
        assert!(err.contains("PNG"), "{err}");
    }
}

#[test]
fn pads_to_a_square_and_resizes_by_area() {
    let wide = Gray { width: 4, height: 2, pixels: vec![1.0; 8] };
    let square = wide.padded_square(0.0);
    assert_eq!((square.width, square.height), (4, 4));
    assert_eq!(square.pixels, [vec![0.0; 4], vec![1.0; 8], vec![0.0; 4]].concat());
    // 4x4 -> 2x2: each output is the mean of a 2x2 block.
    let ramp = Gray { width: 4, height: 4, pixels: (0..16).map(|v| v as f32).collect() };
    assert_eq!(ramp.resized(2, 2).pixels, vec![2.5, 4.5, 10.5, 12.5]);
    // 3 -> 2 along one axis: a third of the middle pixel goes to each side.
    let row = Gray { width: 3, height: 1, pixels: vec![0.0, 3.0, 6.0] };
    let got = row.resized(2, 1).pixels;
    assert!((got[0] - 1.0).abs() < 1e-5 && (got[1] - 5.0).abs() < 1e-5, "{got:?}");
    // Growing repeats values, and a constant image stays constant at any size.
    assert_eq!(Gray { width: 1, height: 1, pixels: vec![7.0] }.resized(3, 3).pixels, vec![7.0; 9]);
    let flat = Gray { width: 7, height: 5, pixels: vec![42.0; 35] };
    assert!(flat.resized(28, 28).pixels.iter().all(|&v| (v - 42.0).abs() < 1e-4));
    assert_eq!(Gray { width: 2, height: 1, pixels: vec![0.0, 255.0] }.to_bytes(true), vec![255, 0]);
}
