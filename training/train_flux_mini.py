"""Trains FLUX-mini: a FLUX.1 pipeline (CLIP + T5 text encoders, 16-channel AutoencoderKL,
FLUX transformer with guidance embedding) on procedurally generated, captioned scenes of
coloured shapes at 128x128, on the CPU, and saves it as a diffusers folder in
mini-models/flux-mini.

Stages (each resumable; `all` runs the missing ones in order):
  vae      the AutoencoderKL on 64x64 crops of scenes (L1 + MSE + small KL)
  encode   the dataset's latent distributions (mean, std) and tokenised captions
  dit      transformer + text encoders, rectified flow, 10 % caption dropout, guidance 1
  distill  guidance distillation: the transformer learns, at guidance g, the teacher's
           classifier-free-guided velocity v_u + g (v_c - v_u) (FLUX.1-dev is distilled so)
  export   writes the pipeline folder and a sample sheet made by diffusers' FluxPipeline

Run from the repository root:
  .venv/bin/python training/train_flux_mini.py all

With `--start-from FOLDER` (a FLUX-mini folder, e.g. the shipped one) the run continues that
model: its VAE is used as it is (no `vae` stage), and `dit` starts from its transformer and text
encoders instead of random weights.
"""

import shutil
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
)
from PIL import Image
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from scenes import scene
from trainkit import (
    MINI_MODELS,
    PROMPT_TOKENS,
    RUNS,
    EncodedDataset,
    Stage,
    cli,
    clip_tokenizer,
    distill_guidance,
    load_ema,
    optimize,
    t5_tokenizer,
    train_flow,
    vae_loss,
    write_defaults,
    write_summary,
)

NAME = "flux-mini"
SIZE = 128
DATASET = 16_000
RUN = RUNS / NAME
TOKENIZERS = RUN / "tokenizers"
SAMPLE_PROMPTS = [
    "a large red circle on a blue background",
    "a small yellow square on a black background",
    "a large green triangle on a white background",
    "a small white circle above a large purple square on a green background",
    "a large orange triangle left of a small blue circle on a yellow background",
    "a large black square right of a small red triangle on a white background",
    "a small blue circle below a large yellow triangle on a red background",
    "a large purple circle on a orange background",
]


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=SIZE,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def make_text_encoders(clip_tok, t5_tok):
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
        pad_token_id=clip_tok.pad_token_id, projection_dim=64))
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok), d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=20,
        feed_forward_proj="gated-gelu", dropout_rate=0.0))
    return clip, t5


def make_transformer() -> FluxTransformer2DModel:
    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=3, num_single_layers=6, attention_head_dim=64,
        num_attention_heads=2, joint_attention_dim=64, pooled_projection_dim=64,
        guidance_embeds=True, axes_dims_rope=(16, 24, 24))


def images(indices, size=SIZE) -> torch.Tensor:
    """Scenes as a [N, 3, H, W] batch in [-1, 1] and their captions."""
    pics, caps = zip(*(scene(int(i), size) for i in indices))
    x = torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, list(caps)


def stage_vae(args) -> None:
    if args.start_from:
        print(f"vae: using the VAE of {args.start_from}")
        return
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    stage = Stage(NAME, "vae", args.vae_steps, {"vae": vae}, opt)
    gen = torch.Generator().manual_seed(1)

    def step(i):
        x, _ = images(torch.randint(0, DATASET, (args.vae_batch,), generator=gen))
        # Random 64x64 crops: the VAE is convolutional and most of the cost is at full size.
        y0, x0 = torch.randint(0, SIZE - 63, (2,), generator=gen).tolist()
        x = x[:, :, y0:y0 + 64, x0:x0 + 64]
        return optimize(opt, vae.parameters(), vae_loss(vae, x, gen))

    if not stage.done:
        stage.run(step, args.vae_lr)
    write_summary(NAME, "vae", stage.summary())


def load_vae(args) -> AutoencoderKL:
    """The trained VAE, or with `--start-from` the one of that folder."""
    vae = make_vae()
    if args.start_from:
        state = AutoencoderKL.from_pretrained(Path(args.start_from) / "vae").state_dict()
    else:
        state = torch.load(RUN / "vae.pt", weights_only=False)["modules"]["vae"]
    vae.load_state_dict(state)
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def stage_encode(args) -> None:
    path = RUN / "latents.pt"
    if path.exists():
        return
    vae = load_vae(args)
    means, stds, captions = [], [], []
    for start in tqdm(range(0, DATASET, 64), desc="encode"):
        x, caps = images(range(start, min(DATASET, start + 64)))
        dist = vae.encode(x).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
        captions += caps
    mean, std = torch.cat(means), torch.cat(stds)
    shift = mean.mean().item()
    scale = 1.0 / (mean - shift).std().item()
    torch.save({"mean": mean, "std": std, "captions": captions, "shift_factor": shift,
                "scaling_factor": scale}, path)
    print(f"latents {tuple(mean.shape)}, shift_factor {shift:.4f}, scaling_factor {scale:.4f}")


class Conditioner(torch.nn.Module):
    """The text side of FluxPipeline.encode_prompt, trainable: CLIP pooled output of the
    77-token padded prompt, T5 hidden states of the PROMPT_TOKENS-token padded prompt."""

    def __init__(self, clip, t5, clip_tok, t5_tok):
        super().__init__()
        self.clip, self.t5 = clip, t5
        self.clip_tok, self.t5_tok = clip_tok, t5_tok

    def tokenize(self, captions):
        clip_ids = self.clip_tok(captions, padding="max_length", max_length=77,
                                 truncation=True, return_tensors="pt").input_ids
        t5_ids = self.t5_tok(captions, padding="max_length", max_length=PROMPT_TOKENS,
                             truncation=True, return_tensors="pt").input_ids
        return clip_ids, t5_ids

    def forward(self, clip_ids, t5_ids):
        pooled = self.clip(clip_ids).pooler_output
        text = self.t5(t5_ids).last_hidden_state
        return pooled, text


def load_conditioner() -> Conditioner:
    clip_tok = clip_tokenizer(TOKENIZERS / "tokenizer")
    t5_tok = t5_tokenizer(TOKENIZERS / "tokenizer_2")
    clip, t5 = make_text_encoders(clip_tok, t5_tok)
    return Conditioner(clip, t5, clip_tok, t5_tok)


def ids(latent_side: int):
    """FLUX position ids: text all zero, image (0, row, col) of the packed 2x2 patches."""
    side = latent_side // 2
    img = torch.zeros(side, side, 3)
    img[..., 1] = torch.arange(side)[:, None]
    img[..., 2] = torch.arange(side)[None, :]
    return torch.zeros(PROMPT_TOKENS, 3), img.reshape(-1, 3)


def pack(z: torch.Tensor) -> torch.Tensor:
    b, c, h, w = z.shape
    return FluxPipeline._pack_latents(z, b, c, h, w)


def dataset(conditioner: Conditioner) -> EncodedDataset:
    """The encoded scenes, latents shifted, scaled and packed as FluxPipeline expects."""
    return EncodedDataset(NAME, conditioner, lambda z, stored: pack(
        (z - stored["shift_factor"]) * stored["scaling_factor"]))


TXT_IDS, IMG_IDS = ids(SIZE // 8)


def velocity(transformer, x, sigma, guidance, cond):
    """The transformer's velocity at noise level `sigma` with embedded `guidance` for the
    conditioner's output `cond` (CLIP pooled, T5 states), as FluxPipeline calls it."""
    pooled, text = cond
    return transformer(hidden_states=x, timestep=sigma, guidance=guidance,
                       pooled_projections=pooled, encoder_hidden_states=text, txt_ids=TXT_IDS,
                       img_ids=IMG_IDS, return_dict=False)[0]


def start_from(folder: Path, transformer, conditioner: Conditioner) -> None:
    """Loads a FLUX-mini folder's transformer and text encoders into the modules."""
    transformer.load_state_dict(
        FluxTransformer2DModel.from_pretrained(folder / "transformer").state_dict())
    conditioner.clip.load_state_dict(
        CLIPTextModel.from_pretrained(folder / "text_encoder").state_dict())
    conditioner.t5.load_state_dict(
        T5EncoderModel.from_pretrained(folder / "text_encoder_2").state_dict())


def stage_dit(args) -> None:
    conditioner = load_conditioner()
    transformer = make_transformer()
    if args.start_from:
        start_from(Path(args.start_from), transformer, conditioner)
    train_flow(NAME, transformer, conditioner, dataset(conditioner), velocity, args)


def stage_distill(args) -> None:
    conditioner = load_conditioner()
    teacher = make_transformer()
    load_ema(NAME, "dit", {"transformer": teacher, "conditioner": conditioner})
    distill_guidance(NAME, teacher, conditioner, dataset(conditioner), velocity, args, 6.0)


def stage_export(args) -> None:
    conditioner = load_conditioner()
    transformer = make_transformer()
    load_ema(NAME, "dit", {"conditioner": conditioner})
    load_ema(NAME, "distill", {"transformer": transformer})
    data = torch.load(RUN / "latents.pt", weights_only=False)
    vae = load_vae(args)
    vae.register_to_config(shift_factor=data["shift_factor"],
                           scaling_factor=data["scaling_factor"])
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=conditioner.clip,
                        tokenizer=conditioner.clip_tok, text_encoder_2=conditioner.t5,
                        tokenizer_2=conditioner.t5_tok, transformer=transformer)
    out = MINI_MODELS / NAME
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    write_defaults(out, width=SIZE, height=SIZE, steps=28, guidance=3.5,
                   max_sequence_length=PROMPT_TOKENS)
    # FLUX folders carry CLIP's vocab.json + merges.txt beside tokenizer.json.
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TOKENIZERS / "tokenizer" / name, out / "tokenizer" / name)
    pipe = FluxPipeline.from_pretrained(out, torch_dtype=torch.float32)
    rows = []
    for i, prompt in enumerate(SAMPLE_PROMPTS):
        image = pipe(prompt, height=SIZE, width=SIZE, num_inference_steps=28,
                     guidance_scale=3.5, max_sequence_length=PROMPT_TOKENS,
                     generator=torch.Generator().manual_seed(i)).images[0]
        rows.append(np.asarray(image))
        print(f"sample {i}: {prompt}")
    sheet = MINI_MODELS / f"{NAME}-samples.png"
    Image.fromarray(np.concatenate(rows, axis=1)).save(sheet)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    write_summary(NAME, "export", {"folder_mb": round(size / 1e6, 2)})
    print(f"wrote {out} ({size / 1e6:.1f} MB); samples in {sheet}")


STAGES = {"vae": stage_vae, "encode": stage_encode, "dit": stage_dit,
          "distill": stage_distill, "export": stage_export}


def main() -> None:
    cli(__doc__, RUN, STAGES, {
        "--batch": 32, "--vae-steps": 2000, "--vae-batch": 16, "--vae-lr": 1e-3,
        "--dit-steps": 3500, "--dit-lr": 5e-4, "--distill-steps": 400, "--distill-lr": 1e-4,
        "--start-from": "",
    })


if __name__ == "__main__":
    main()
