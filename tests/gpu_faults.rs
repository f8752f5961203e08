//! GPU faults surface as errors, not panics: a validation error caught by the
//! uncaptured-error handler, and a lost (destroyed) device.

mod common;

#[test]
fn a_validation_error_becomes_an_error_value() {
    let gpu = common::gpu();
    let small = gpu.storage("small", 4).unwrap();
    let other = gpu.storage("other", 4).unwrap();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    // 64 bytes out of a 16-byte buffer: invalid, reported asynchronously.
    encoder.copy_buffer_to_buffer(&small, 0, &other, 0, 64);
    gpu.queue.submit([encoder.finish()]);
    let err = gpu.wait().unwrap_err();
    println!("{err}");
    assert!(err.starts_with("GPU error: "), "{err}");
}

#[test]
fn a_lost_device_becomes_an_error_value() {
    let gpu = common::gpu();
    let buffer = gpu.storage("data", 4).unwrap();
    gpu.device.destroy();
    let err = gpu.read_words::<f32>(&buffer, 0, 4).unwrap_err();
    println!("{err}");
    assert!(err.contains("device lost") || err.contains("GPU"), "{err}");
}
