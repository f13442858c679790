//! The benchmark's prompts: 16 per model in the caption grammar the mini models were trained
//! on (`training/scenes.py`, word for word, so "on a orange background"), a mix of sizes,
//! colours, shapes, relations and directions. Sample `i` uses prompt `i % 16` and seed `i`.

/// FLUX-mini: "a {size} {color} {shape} on a {bg} background" and "a {size} {color} {shape}
/// {relation} a {size} {color} {shape} on a {bg} background"; shape colours differ from the
/// background's.
pub const FLUX: [&str; 16] = [
    "a large red circle on a blue background",
    "a small yellow square above a large green triangle on a black background",
    "a small white triangle on a purple background",
    "a large blue square left of a small orange circle on a white background",
    "a large green triangle on a yellow background",
    "a small purple circle below a small red square on a green background",
    "a small black square on a orange background",
    "a large orange circle right of a large blue triangle on a black background",
    "a small red triangle on a white background",
    "a large white circle above a small black square on a red background",
    "a large yellow square on a purple background",
    "a small green circle left of a large yellow triangle on a blue background",
    "a large purple triangle on a green background",
    "a small blue triangle below a large white circle on a orange background",
    "a small orange square on a black background",
    "a large black circle right of a small red triangle on a yellow background",
];

/// WAN-mini and HunyuanVideo-mini (trained on the same clips): "a {size} {color} {shape}
/// moving {left|right|up|down} on a {bg} background".
pub const VIDEO: [&str; 16] = [
    "a large red circle moving right on a blue background",
    "a small yellow square moving left on a black background",
    "a large white triangle moving up on a purple background",
    "a small green circle moving down on a white background",
    "a large blue square moving left on a yellow background",
    "a small orange triangle moving right on a green background",
    "a large purple circle moving down on a orange background",
    "a small black square moving up on a red background",
    "a large yellow triangle moving right on a black background",
    "a small red square moving down on a green background",
    "a large green triangle moving left on a purple background",
    "a small white circle moving up on a blue background",
    "a large orange square moving down on a white background",
    "a small blue circle moving left on a yellow background",
    "a large black triangle moving up on a orange background",
    "a small purple square moving right on a black background",
];
