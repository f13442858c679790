"""What the video mini models (WAN-mini, HunyuanVideo-mini) share: the clip dataset of
scenes.clip at 64x64 x 9 frames, the shape-weighted loss, the training stages of their causal 3D
VAEs, the encoded dataset, the sample strip and the evaluation of what a trained pipeline
follows (colours, motion)."""

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from scenes import COLORS, DIRECTIONS, clip
from trainkit import (
    MINI_MODELS,
    PROMPT_TOKENS,
    RUNS,
    Stage,
    optimize,
    reconstruction_loss,
    vae_loss,
    write_summary,
)

SIZE, FRAMES = 64, 9
DATASET = 4_000
SAMPLE_PROMPTS = [
    "a large red circle moving right on a blue background",
    "a small yellow square moving down on a black background",
    "a large green triangle moving left on a white background",
    "a large white square moving up on a purple background",
    "a small orange circle moving left on a green background",
    "a large blue triangle moving up on a yellow background",
    "a large purple square moving right on a white background",
    "a small green circle moving down on a red background",
]


def videos(indices, frames=FRAMES) -> tuple[torch.Tensor, list[str]]:
    """Clips as a [N, 3, F, H, W] batch in [-1, 1] and their captions."""
    clips, caps = zip(*(clip(int(i), FRAMES, SIZE) for i in indices))
    x = torch.from_numpy(np.stack(clips)[:, :frames]).permute(0, 4, 1, 2, 3).float()
    return x / 127.5 - 1, list(caps)


def crops(n: int, frames: int, gen: torch.Generator, side: int = 32) -> torch.Tensor:
    """`n` random clips' first `frames` frames, cropped to one random `side` x `side` window:
    the VAE is convolutional and most of its cost is at full size."""
    x, _ = videos(torch.randint(0, DATASET, (n,), generator=gen), frames)
    y0, x0 = torch.randint(0, SIZE - side + 1, (2,), generator=gen).tolist()
    return x[..., y0:y0 + side, x0:x0 + side]


def off_background(x: torch.Tensor) -> torch.Tensor:
    """Which pixels of clips [N, 3, F, H, W] in [-1, 1] are away from their clip's background
    colour (its per-channel median): a [N, 1, F, H, W] mask of the shape."""
    background = x.flatten(2).median(dim=2).values.view(x.shape[0], 3, 1, 1, 1)
    return (x - background).abs().sum(dim=1, keepdim=True) > 0.15


def shape_weight(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weights [N, 1, F, H, W]: 9 on the shape's pixels (`off_background`), 1
    elsewhere, so the small moving shape is not drowned by the background in the mean."""
    return 1 + 8 * off_background(x).float()


def motion(video: np.ndarray) -> str:
    """The direction (a key of DIRECTIONS) the shape's centroid travels in a generated clip
    [F, H, W, 3] in [0, 1]: the centroid of its `off_background` pixels, from the first three
    frames to the last three."""
    x = torch.from_numpy(video).permute(3, 0, 1, 2)[None] * 2 - 1
    centres = []
    for mask in off_background(x)[0, 0].numpy():
        ys, xs = np.nonzero(mask)
        centres.append((xs.mean(), ys.mean()) if len(xs) else (np.nan, np.nan))
    centres = np.array(centres)
    shift = np.nanmean(centres[-3:], axis=0) - np.nanmean(centres[:3], axis=0)
    return max(DIRECTIONS, key=lambda d: float(np.dot(DIRECTIONS[d], shift)))


class VideoVae:
    """The stages of a mini model's causal 3D VAE (`make` builds it untrained): `train` on
    32x32 crops, `finetune_decoder` on whole frames, `load`, `encode_dataset`; checkpoints in
    runs/<name>/."""

    def __init__(self, name: str, make):
        self.name, self.make = name, make
        self.run_dir = RUNS / name

    def train(self, args) -> None:
        """L1 + MSE + small KL on crops of 5-frame clips (first frame + one 4-frame chunk) and,
        every fourth step, of whole 9-frame clips; for the second half of the steps the shape's
        pixels weigh 9x the background's."""
        vae = self.make()
        with torch.no_grad():
            # Start from a nearly deterministic posterior (std ~0.05): with the default init
            # the sampling noise (std ~1) buries the latent means (std ~0.2) and the decoder
            # learns to ignore them for hundreds of steps.
            vae.quant_conv.bias[vae.quant_conv.out_channels // 2:] = -6.0
        opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        stage = Stage(self.name, "vae", args.vae_steps, {"vae": vae}, opt)
        gen = torch.Generator().manual_seed(1)

        def step(i):
            x = crops(args.vae_batch, FRAMES if i % 4 == 3 else 5, gen)
            weight = shape_weight(x) if i >= args.vae_steps // 2 else None
            return optimize(opt, vae.parameters(), vae_loss(vae, x, gen, weight))

        if not stage.done:
            stage.run(step, args.vae_lr)
        write_summary(self.name, "vae", stage.summary())

    def load(self, decoder: bool = False):
        """The trained VAE; with `decoder`, its decoder fine-tuned by `finetune_decoder`."""
        vae = self.make()
        state = torch.load(self.run_dir / "vae.pt", weights_only=False)
        vae.load_state_dict(state["modules"]["vae"])
        if decoder:
            state = torch.load(self.run_dir / "decoder.pt", weights_only=False)["modules"]
            vae.decoder.load_state_dict(state["decoder"])
            vae.post_quant_conv.load_state_dict(state["post_quant_conv"])
        return vae.eval().requires_grad_(False)

    def finetune_decoder(self, args) -> None:
        """Fine-tunes the decoder alone on the frozen encoder's latents of whole frames (the
        VAE itself trained on crops), so the latent space the transformer learns (from
        `encode_dataset`) stays the same; the shape's pixels weigh 9x."""
        vae = self.load()
        trained = {"decoder": vae.decoder.train().requires_grad_(True),
                   "post_quant_conv": vae.post_quant_conv.requires_grad_(True)}
        params = [p for m in trained.values() for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=args.decoder_lr, weight_decay=0.0)
        stage = Stage(self.name, "decoder", args.decoder_steps, trained, opt)
        gen = torch.Generator().manual_seed(4)

        def step(i):
            x = crops(args.vae_batch, FRAMES if i % 2 == 1 else 5, gen, side=SIZE)
            with torch.no_grad():
                z = vae.encode(x).latent_dist.sample(generator=gen)
            rec = vae.decode(z).sample
            return optimize(opt, params, reconstruction_loss(rec, x, shape_weight(x)))

        if not stage.done:
            stage.run(step, args.decoder_lr, warmup=20)
        write_summary(self.name, "decoder", stage.summary())

    @torch.no_grad()
    def encode_dataset(self):
        """The dataset through the trained encoder: posterior means and stds [N, C, f, h, w]
        and the captions."""
        vae = self.load()
        means, stds, captions = [], [], []
        for start in tqdm(range(0, DATASET, 32), desc="encode"):
            x, caps = videos(range(start, min(DATASET, start + 32)))
            dist = vae.encode(x).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            captions += caps
        return torch.cat(means), torch.cat(stds), captions


@torch.no_grad()
def generate(pipe, prompt: str, seed: int, steps: int, guidance: float) -> np.ndarray:
    """One clip [F, H, W, 3] in [0, 1] of the mini models' size and prompt length."""
    return pipe(prompt, height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=steps,
                guidance_scale=guidance, max_sequence_length=PROMPT_TOKENS,
                generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]


def sample_strip(name: str, pipe, steps: int, guidance: float) -> None:
    """Generates SAMPLE_PROMPTS with the saved pipeline `pipe` (seed = row), writes them as
    mini-models/<name>-samples.png (a row of frames per prompt), prints the motion of each and
    records the folder's size and how many moved as their prompt says."""
    rows, followed = [], 0
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        video = generate(pipe, prompt, i, steps, guidance)
        rows.append(np.concatenate(list((video * 255).round().astype(np.uint8)), axis=1))
        moved = motion(video)
        followed += f"moving {moved} " in prompt
        print(f"sample {i}: {prompt} (moves {moved})")
    sheet = MINI_MODELS / f"{name}-samples.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(sheet)
    out = MINI_MODELS / name
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    write_summary(name, "export", {"folder_mb": round(size / 1e6, 2),
                                   "motion_followed": f"{followed}/{len(SAMPLE_PROMPTS)}"})
    print(f"wrote {out} ({size / 1e6:.1f} MB); samples in {sheet}")


def coverage(frame: np.ndarray, color: str) -> float:
    """Share of a frame's pixels [H, W, 3] (uint8) within RGB distance 60 of the palette's
    `color` (the test of tests/tests/mini_models.rs)."""
    d2 = ((frame.astype(np.int32) - np.array(COLORS[color])) ** 2).sum(-1)
    return float((d2 < 60 * 60).mean())


@torch.no_grad()
def evaluate(name: str, pipeline_class, steps: int, guidance: float, seeds: int) -> None:
    """Loads mini-models/<name> as `pipeline_class`, generates SAMPLE_PROMPTS at `seeds` seeds
    each (seed = prompt index + 100 x seed index) and counts the clips whose background covers
    over half of every frame, whose shape covers over 5 % of every frame and of the first five
    (the first two latent frames), and whose shape moves the way the prompt says (`motion`);
    prints and records the counts. `seeds` below 1 is an error, before anything loads."""
    if seeds < 1:
        raise SystemExit(f"--eval-seeds must be at least 1, got {seeds}")
    pipe = pipeline_class.from_pretrained(MINI_MODELS / name, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    counts = {"background": 0, "shape_every_frame": 0, "shape_first_five": 0, "motion": 0}
    prompts = [(p, i + 100 * s) for s in range(seeds) for i, p in enumerate(SAMPLE_PROMPTS)]
    for prompt, seed in tqdm(prompts, desc="evaluate"):
        video = generate(pipe, prompt, seed, steps, guidance)
        frames = (video * 255).round().astype(np.uint8)
        words = prompt.split(" ")
        shape = [coverage(f, words[2]) for f in frames]
        counts["background"] += min(coverage(f, words[-2]) for f in frames) > 0.5
        counts["shape_every_frame"] += min(shape) > 0.05
        counts["shape_first_five"] += min(shape[:5]) > 0.05
        counts["motion"] += f"moving {motion(video)} " in prompt
    result = {k: f"{v}/{len(prompts)}" for k, v in counts.items()}
    write_summary(name, "evaluate", result)
    print(", ".join(f"{k} {v}" for k, v in result.items()))
