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
  evaluate how often the exported pipeline paints the prompt's colours and moves the shape
           its way (the 8 sample prompts x --eval-seeds seeds)

Run from the repository root:
  .venv/bin/python training/train_wan_mini.py all
"""

import shutil

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from trainkit import (
    MINI_MODELS,
    PROMPT_TOKENS,
    RUNS,
    EncodedDataset,
    cli,
    load_ema,
    t5_tokenizer,
    train_flow,
    write_defaults,
)
from videokit import FRAMES, SIZE, VideoVae, evaluate, sample_strip

NAME = "wan-mini"
RUN = RUNS / NAME
STEPS, GUIDANCE = 30, 5.0


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


VAE = VideoVae(NAME, make_vae)


def stage_encode(args) -> None:
    path = RUN / "latents.pt"
    if path.exists():
        return
    mean, std, captions = VAE.encode_dataset()
    channel_mean = mean.mean(dim=(0, 2, 3, 4))
    channel_std = mean.std(dim=(0, 2, 3, 4))
    torch.save({"mean": mean, "std": std, "captions": captions,
                "latents_mean": channel_mean.tolist(), "latents_std": channel_std.tolist()}, path)
    print(f"latents {tuple(mean.shape)}")


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


def dataset(conditioner: Conditioner) -> EncodedDataset:
    """The encoded clips, latents normalised with the per-channel mean and std (as WanPipeline
    undoes it)."""
    def normalise(z, stored):
        mean = torch.tensor(stored["latents_mean"]).view(1, -1, 1, 1, 1)
        std = torch.tensor(stored["latents_std"]).view(1, -1, 1, 1, 1)
        return (z - mean) / std

    return EncodedDataset(NAME, conditioner, normalise)


def velocity(transformer, x, sigma, _guidance, states):
    """The transformer's velocity at noise level `sigma` for the prompt states `states`, as
    WanPipeline calls it (timestep times 1000; no guidance embedding)."""
    return transformer(hidden_states=x, timestep=sigma * 1000, encoder_hidden_states=states,
                       return_dict=False)[0]


def stage_dit(args) -> None:
    conditioner = load_conditioner()
    train_flow(NAME, make_transformer(), conditioner, dataset(conditioner), velocity, args)


def stage_export(args) -> None:
    conditioner = load_conditioner()
    transformer = make_transformer()
    load_ema(NAME, "dit", {"transformer": transformer, "conditioner": conditioner})
    data = torch.load(RUN / "latents.pt", weights_only=False)
    vae = VAE.load(decoder=True)
    vae.register_to_config(latents_mean=data["latents_mean"], latents_std=data["latents_std"])
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=args.flow_shift)
    pipe = WanPipeline(tokenizer=conditioner.tok, text_encoder=conditioner.encoder,
                       transformer=transformer, vae=vae, scheduler=scheduler)
    out = MINI_MODELS / NAME
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    write_defaults(out, width=SIZE, height=SIZE, frames=FRAMES, steps=STEPS, guidance=GUIDANCE,
                   max_sequence_length=PROMPT_TOKENS)
    pipe = WanPipeline.from_pretrained(out, torch_dtype=torch.float32)
    sample_strip(NAME, pipe, STEPS, GUIDANCE)


def stage_evaluate(args) -> None:
    evaluate(NAME, WanPipeline, STEPS, GUIDANCE, args.eval_seeds)


STAGES = {"vae": VAE.train, "encode": stage_encode, "decoder": VAE.finetune_decoder,
          "dit": stage_dit, "export": stage_export, "evaluate": stage_evaluate}


def main() -> None:
    # The VAE's learning rate: at 1e-3 this small AutoencoderKLWan (16-32 channels, RMS norms)
    # stalls near its initial loss and cannot even overfit one batch; 1e-4 to 2e-4 trains.
    cli(__doc__, RUN, STAGES, {
        "--batch": 32, "--vae-steps": 4000, "--vae-batch": 8, "--vae-lr": 2e-4,
        "--decoder-steps": 1000, "--decoder-lr": 3e-4, "--dit-steps": 7000, "--dit-lr": 5e-4,
        "--flow-shift": 2.0, "--eval-seeds": 8,
    })


if __name__ == "__main__":
    main()
