"""Trains WAN-mini: a WAN 2.1 text-to-video pipeline (umT5 text encoder, causal 3D
AutoencoderKLWan, WAN transformer) on generated 9-frame 64x64 clips of a moving shape with
captions ("a small green triangle moving left on a black background"), on the CPU, and saves
it as a diffusers folder in mini-models/wan-mini.

Stages (each resumable; `all` runs the missing ones in order):
  vae      the AutoencoderKLWan on 32x32 crops of 5-frame clips (first frame + one 4-frame
           chunk) and of whole 9-frame clips, L1 + MSE + small KL; for the second half of the
           steps the shape's pixels weigh 9x the background's
  encode   the dataset's latent distributions and tokenised captions; per-channel
           latents_mean / latents_std for the VAE config
  decoder  the decoder alone, fine-tuned on whole frames through the frozen encoder
           (shape-weighted)
  dit      transformer + umT5, rectified flow, 10 % caption dropout (for classifier-free
           guidance with the empty negative prompt)
  export   writes the pipeline folder and a sample strip made by diffusers' WanPipeline

Run from the repository root:
  .venv/bin/python training/train_wan_mini.py all
"""

import shutil

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from PIL import Image
from tqdm import tqdm
from transformers import UMT5Config, UMT5EncoderModel

from scenes import DIRECTIONS, clip
from trainkit import (
    MINI_MODELS,
    PROMPT_TOKENS,
    RUNS,
    Ema,
    Stage,
    cli,
    logit_normal,
    noised,
    optimize,
    reconstruction_loss,
    t5_tokenizer,
    vae_loss,
    write_defaults,
    write_summary,
)

NAME = "wan-mini"
SIZE, FRAMES = 64, 9
DATASET = 4_000
RUN = RUNS / NAME
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


def make_vae() -> AutoencoderKLWan:
    return AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                            attn_scales=[], temperal_downsample=[False, True, True])


def make_text_encoder(tok) -> UMT5EncoderModel:
    return UMT5EncoderModel(UMT5Config(
        vocab_size=len(tok), d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu", dropout_rate=0.0))


def make_transformer() -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=16,
        out_channels=16, text_dim=64, freq_dim=256, ffn_dim=512, num_layers=8,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None,
        rope_max_seq_len=1024)


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


def stage_vae(args) -> None:
    vae = make_vae()
    with torch.no_grad():
        # Start from a nearly deterministic posterior (std ~0.05): with the default init the
        # sampling noise (std ~1) buries the latent means (std ~0.2) and the decoder learns to
        # ignore them for hundreds of steps.
        vae.quant_conv.bias[vae.config.z_dim:] = -6.0
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    stage = Stage(NAME, "vae", args.vae_steps, {"vae": vae}, opt)
    gen = torch.Generator().manual_seed(1)

    def step(i):
        x = crops(args.vae_batch, FRAMES if i % 4 == 3 else 5, gen)
        weight = shape_weight(x) if i >= args.vae_steps // 2 else None
        return optimize(opt, vae.parameters(), vae_loss(vae, x, gen, weight))

    if not stage.done:
        stage.run(step, args.vae_lr)
    write_summary(NAME, "vae", stage.summary())


def off_background(x: torch.Tensor) -> torch.Tensor:
    """Which pixels of clips [N, 3, F, H, W] in [-1, 1] are away from their clip's background
    colour (its per-channel median): a [N, 1, F, H, W] mask of the shape."""
    background = x.flatten(2).median(dim=2).values.view(x.shape[0], 3, 1, 1, 1)
    return (x - background).abs().sum(dim=1, keepdim=True) > 0.15


def shape_weight(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss weights [N, 1, F, H, W]: 9 on the shape's pixels (`off_background`), 1
    elsewhere, so the small moving shape is not drowned by the background in the mean."""
    return 1 + 8 * off_background(x).float()


def load_vae(decoder: bool = False) -> AutoencoderKLWan:
    """The trained VAE; with `decoder`, its decoder fine-tuned by the `decoder` stage."""
    vae = make_vae()
    vae.load_state_dict(torch.load(RUN / "vae.pt", weights_only=False)["modules"]["vae"])
    if decoder:
        state = torch.load(RUN / "decoder.pt", weights_only=False)["modules"]
        vae.decoder.load_state_dict(state["decoder"])
        vae.post_quant_conv.load_state_dict(state["post_quant_conv"])
    return vae.eval().requires_grad_(False)


def stage_decoder(args) -> None:
    """Fine-tunes the decoder alone on the frozen encoder's latents of whole frames (the VAE
    itself trained on crops), so the latent space the transformer learns (from `encode`) stays
    the same; the shape's pixels weigh 9x."""
    vae = load_vae()
    trained = {"decoder": vae.decoder.train().requires_grad_(True),
               "post_quant_conv": vae.post_quant_conv.requires_grad_(True)}
    params = [p for m in trained.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.decoder_lr, weight_decay=0.0)
    stage = Stage(NAME, "decoder", args.decoder_steps, trained, opt)
    gen = torch.Generator().manual_seed(4)

    def step(i):
        x = crops(args.vae_batch, FRAMES if i % 2 == 1 else 5, gen, side=SIZE)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=gen)
        rec = vae.decode(z).sample
        return optimize(opt, params, reconstruction_loss(rec, x, shape_weight(x)))

    if not stage.done:
        stage.run(step, args.decoder_lr, warmup=20)
    write_summary(NAME, "decoder", stage.summary())


@torch.no_grad()
def stage_encode(args) -> None:
    path = RUN / "latents.pt"
    if path.exists():
        return
    vae = load_vae()
    means, stds, captions = [], [], []
    for start in tqdm(range(0, DATASET, 32), desc="encode"):
        x, caps = videos(range(start, min(DATASET, start + 32)))
        dist = vae.encode(x).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
        captions += caps
    mean, std = torch.cat(means), torch.cat(stds)
    channel_mean = mean.mean(dim=(0, 2, 3, 4))
    channel_std = mean.std(dim=(0, 2, 3, 4))
    torch.save({"mean": mean, "std": std, "captions": captions,
                "latents_mean": channel_mean.tolist(), "latents_std": channel_std.tolist()}, path)
    print(f"latents {tuple(mean.shape)}")


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


class Conditioner(torch.nn.Module):
    """WanPipeline's prompt encoding, trainable: umT5 over the PROMPT_TOKENS-token padded
    prompt with its attention mask, states past the prompt's length set to zero."""

    def __init__(self, encoder, tok):
        super().__init__()
        self.encoder, self.tok = encoder, tok

    def tokenize(self, captions):
        t = self.tok(captions, padding="max_length", max_length=PROMPT_TOKENS, truncation=True,
                     add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        return t.input_ids, t.attention_mask

    def forward(self, ids, mask):
        states = self.encoder(ids, mask).last_hidden_state
        return states * mask.unsqueeze(-1).to(states.dtype)


def load_conditioner() -> Conditioner:
    tok = t5_tokenizer(RUN / "tokenizer")
    return Conditioner(make_text_encoder(tok), tok)


class Data:
    """The encoded dataset: latents sampled from the stored posteriors and normalised with the
    per-channel mean/std (as WanPipeline undoes it), tokenised captions, caption dropout."""

    def __init__(self, conditioner: Conditioner):
        data = torch.load(RUN / "latents.pt", weights_only=False)
        self.mean, self.std = data["mean"], data["std"]
        self.channel_mean = torch.tensor(data["latents_mean"]).view(1, -1, 1, 1, 1)
        self.channel_std = torch.tensor(data["latents_std"]).view(1, -1, 1, 1, 1)
        self.ids, self.mask = conditioner.tokenize(data["captions"])
        self.empty = conditioner.tokenize([""])

    def batch(self, n: int, gen: torch.Generator, dropout: float):
        idx = torch.randint(0, len(self.ids), (n,), generator=gen)
        z = self.mean[idx] + self.std[idx] * torch.randn(self.mean[idx].shape, generator=gen)
        x0 = (z - self.channel_mean) / self.channel_std
        ids, mask = self.ids[idx].clone(), self.mask[idx].clone()
        drop = torch.rand(n, generator=gen) < dropout
        ids[drop], mask[drop] = self.empty[0], self.empty[1]
        return x0, ids, mask


def stage_dit(args) -> None:
    conditioner = load_conditioner()
    transformer = make_transformer()
    data = Data(conditioner)
    params = list(transformer.parameters()) + list(conditioner.parameters())
    opt = torch.optim.AdamW(params, lr=args.dit_lr, weight_decay=0.0)
    modules = {"transformer": transformer, "conditioner": conditioner}
    ema = {k: Ema(m, 0.999) for k, m in modules.items()}
    stage = Stage(NAME, "dit", args.dit_steps, modules, opt, ema)
    gen = torch.Generator().manual_seed(2)

    def step(i):
        x0, ids, mask = data.batch(args.batch, gen, dropout=0.1)
        noise = torch.randn(x0.shape, generator=gen)
        sigma = logit_normal(args.batch, gen)
        xt, target = noised(x0, noise, sigma)
        pred = transformer(hidden_states=xt, timestep=sigma * 1000,
                           encoder_hidden_states=conditioner(ids, mask), return_dict=False)[0]
        return optimize(opt, params, F.mse_loss(pred, target))

    if not stage.done:
        stage.run(step, args.dit_lr)
    write_summary(NAME, "dit", stage.summary())


def stage_export(args) -> None:
    conditioner = load_conditioner()
    transformer = make_transformer()
    state = torch.load(RUN / "dit.pt", weights_only=False)
    transformer.load_state_dict(state["ema"]["transformer"])
    conditioner.load_state_dict(state["ema"]["conditioner"])
    data = torch.load(RUN / "latents.pt", weights_only=False)
    vae = load_vae(decoder=True)
    vae.register_to_config(latents_mean=data["latents_mean"], latents_std=data["latents_std"])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=args.flow_shift)
    pipe = WanPipeline(tokenizer=conditioner.tok, text_encoder=conditioner.encoder,
                       transformer=transformer, vae=vae, scheduler=scheduler)
    out = MINI_MODELS / NAME
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    write_defaults(out, width=SIZE, height=SIZE, frames=FRAMES, steps=30, guidance=5.0,
                   max_sequence_length=PROMPT_TOKENS)
    pipe = WanPipeline.from_pretrained(out, torch_dtype=torch.float32)
    rows, followed = [], 0
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        video = pipe(prompt, height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=30,
                     guidance_scale=5.0, max_sequence_length=PROMPT_TOKENS,
                     generator=torch.Generator().manual_seed(i), output_type="np").frames[0]
        rows.append(np.concatenate(list((video * 255).round().astype(np.uint8)), axis=1))
        moved = motion(video)
        followed += f"moving {moved} " in prompt
        print(f"sample {i}: {prompt} (moves {moved})")
    sheet = MINI_MODELS / f"{NAME}-samples.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(sheet)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    write_summary(NAME, "export", {"folder_mb": round(size / 1e6, 2),
                                   "motion_followed": f"{followed}/{len(SAMPLE_PROMPTS)}"})
    print(f"wrote {out} ({size / 1e6:.1f} MB); samples in {sheet}")


STAGES = {"vae": stage_vae, "encode": stage_encode, "decoder": stage_decoder, "dit": stage_dit,
          "export": stage_export}


def main() -> None:
    # The VAE's learning rate: at 1e-3 this small AutoencoderKLWan (16-32 channels, RMS norms)
    # stalls near its initial loss and cannot even overfit one batch; 1e-4 to 2e-4 trains.
    cli(__doc__, RUN, STAGES, {
        "--batch": 32, "--vae-steps": 4000, "--vae-batch": 8, "--vae-lr": 2e-4,
        "--decoder-steps": 1000, "--decoder-lr": 3e-4, "--dit-steps": 7000, "--dit-lr": 5e-4,
        "--flow-shift": 2.0,
    })


if __name__ == "__main__":
    main()
