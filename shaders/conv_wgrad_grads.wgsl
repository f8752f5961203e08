// conv_wgrad_ic's gradient fetch, plain variant: every lane loads all 8 channels.
// Appended to conv_wgrad.wgsl.

// dy of channels oc0 .. oc0 + 7 at two pixels; `at` (even) is channel oc0's index.
fn grads8(at: u32, plane: u32, lane: u32) -> Grads8Pair {
    return own_grads8(at, plane);
}
