// conv_wgrad_ic's gradient fetch, plain variant: every lane loads all 8 values.
// Appended to conv_wgrad.wgsl.

// dy of channels oc0 .. oc0 + 7 at one pixel; `at` is channel oc0's index.
fn grads8(at: u32, plane: u32, lane: u32) -> array<f32, 8> {
    return array<f32, 8>(dy[at], dy[at + plane], dy[at + 2u * plane], dy[at + 3u * plane],
                         dy[at + 4u * plane], dy[at + 5u * plane], dy[at + 6u * plane], dy[at + 7u * plane]);
}
