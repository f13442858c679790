"""Trains HunyuanVideo-mini: a HunyuanVideo text-to-video pipeline (LLaMA text encoder behind
HunyuanVideo's prompt template and its crop, CLIP pooled, causal 3D AutoencoderKLHunyuanVideo,
dual- and single-stream transformer with the token refiner and embedded guidance) on the
9-frame 64x64 clips and captions of WAN-mini ("a small green triangle moving left on a black
background"), on the CPU, and saves it as a diffusers folder in mini-models/hunyuan-mini.

Stages (each resumable; `all` runs the missing ones in order):
  vae      the AutoencoderKLHunyuanVideo on 32x32 crops of 5- and 9-frame clips, L1 + MSE +
           small KL; for the second half of the steps the shape's pixels weigh 9x
  encode   the dataset's latent distributions and their per-channel means and stds, which the
           transformer's latents are whitened with and export folds into the VAE (its
           scaling_factor is then 1: HunyuanVideoPipeline only divides by it)
  decoder  the decoder alone, fine-tuned on whole frames through the frozen encoder
  dit      transformer + LLaMA + CLIP, rectified flow, 10 % caption dropout, guidance 1
  distill  guidance distillation: at embedded guidance g in [1, 6] the transformer learns the
           teacher's classifier-free-guided velocity v_u + g (v_c - v_u), which is how
           HunyuanVideo's guidance embedding is meant to be used (no second pass at run time)
  export   writes the pipeline folder and a sample strip made by diffusers'
           HunyuanVideoPipeline
  evaluate how often the exported pipeline paints the prompt's colours and moves the shape
           its way (the 8 sample prompts x --eval-seeds seeds)

The LLaMA tokenizer is a byte-level BPE with Llama 3's pre-tokenisation and special tokens
whose merges make every chunk of the prompt template and every grammar word one token, so the
template is 97 tokens as with Llama 3's own vocabulary and the pipeline's default crop_start of
95 removes exactly the template's head; other words are spelled byte by byte.

Run from the repository root:
  .venv/bin/python training/train_hunyuan_mini.py all
"""

import re
import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    LlamaConfig,
    LlamaModel,
    PreTrainedTokenizerFast,
)

from trainkit import (  # first: it puts fixtures/ on the path for gen_llama and gen_text_encoders
    MINI_MODELS,
    PROMPT_TOKENS,
    RUNS,
    EncodedDataset,
    cli,
    clip_tokenizer,
    distill_guidance,
    load_ema,
    train_flow,
    write_defaults,
)

from gen_llama import SPECIALS, bpe_tokenizer, pre_tokenizer  # noqa: E402
from gen_text_encoders import learn_merges  # noqa: E402
from scenes import vocabulary  # noqa: E402
from videokit import FRAMES, SIZE, VideoVae, evaluate, sample_strip  # noqa: E402

NAME = "hunyuan-mini"
RUN = RUNS / NAME
TOKENIZERS = RUN / "tokenizers"
TEMPLATE = DEFAULT_PROMPT_TEMPLATE["template"]
CROP_START = DEFAULT_PROMPT_TEMPLATE["crop_start"]
SKIP_LAYERS = 2  # HunyuanVideoPipeline's num_hidden_layers_to_skip
CLIP_TOKENS = 77
STEPS, GUIDANCE, SHIFT = 30, 6.0, 3.0


def template_chunks(text: str) -> list[str]:
    """The pre-tokenised chunks of `text` (byte-level symbols) between its special tokens, as
    the tokenizer splits them."""
    pattern = "(" + "|".join(re.escape(s) for s in SPECIALS) + ")"
    chunks = []
    for part in re.split(pattern, text):
        if part and part not in SPECIALS:
            chunks += [w for w, _ in pre_tokenizer().pre_tokenize_str(part)]
    return chunks


def llama_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """The LLaMA tokenizer: merges learned until every chunk of the templated grammar (the
    template's words, `{}`, each grammar word with and without its leading space) is one
    token; saved as a transformers fast tokenizer (tokenizer.json)."""
    texts = [TEMPLATE, TEMPLATE.format("a " + " ".join(vocabulary())), TEMPLATE.format("")]
    words = sorted({c for t in texts for c in template_chunks(t)})
    tok = bpe_tokenizer(learn_merges([list(w) for w in words], 100_000))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<pad>",
                                   padding_side="right")
    fast.save_pretrained(folder)
    fast = PreTrainedTokenizerFast.from_pretrained(folder)
    head = len(fast(TEMPLATE.split("{}")[0]).input_ids)
    assert head == CROP_START, f"the template's head is {head} tokens, not {CROP_START}"
    return fast


def make_vae() -> AutoencoderKLHunyuanVideo:
    return AutoencoderKLHunyuanVideo(latent_channels=16, block_out_channels=(16, 32, 32, 32),
                                     layers_per_block=1, norm_num_groups=8)


def make_text_encoders(tok, clip_tok):
    llama = LlamaModel(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128,
        num_hidden_layers=SKIP_LAYERS + 2, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=131072, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id))
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=CLIP_TOKENS, hidden_act="quick_gelu",
        bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
        pad_token_id=clip_tok.pad_token_id, projection_dim=64))
    return llama, clip


def make_transformer() -> HunyuanVideoTransformer3DModel:
    return HunyuanVideoTransformer3DModel(
        in_channels=16, out_channels=16, num_attention_heads=2, attention_head_dim=64,
        num_layers=3, num_single_layers=5, num_refiner_layers=1, mlp_ratio=4.0, patch_size=2,
        patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=64,
        pooled_projection_dim=64, rope_theta=256.0, rope_axes_dim=(16, 24, 24))


VAE = VideoVae(NAME, make_vae)


def stage_encode(args) -> None:
    path = RUN / "latents.pt"
    if path.exists():
        return
    mean, std, captions = VAE.encode_dataset()
    channel_mean = mean.mean(dim=(0, 2, 3, 4))
    channel_std = mean.std(dim=(0, 2, 3, 4))
    torch.save({"mean": mean, "std": std, "captions": captions,
                "channel_mean": channel_mean, "channel_std": channel_std}, path)
    print(f"latents {tuple(mean.shape)}, channel means {channel_mean.abs().max():.3f} at most, "
          f"channel stds {channel_std.min():.3f}..{channel_std.max():.3f}")


def whiten(z: torch.Tensor, stored: dict) -> torch.Tensor:
    """Latents [N, C, f, h, w] with the dataset's per-channel mean and std taken out: what the
    transformer learns to denoise (`fold_whitening` puts the same map into the exported VAE)."""
    shape = (1, -1, 1, 1, 1)
    return (z - stored["channel_mean"].view(shape)) / stored["channel_std"].view(shape)


@torch.no_grad()
def fold_whitening(vae: AutoencoderKLHunyuanVideo, mean: torch.Tensor, std: torch.Tensor):
    """Makes the VAE's latent space the whitened one, exactly: its posterior mean becomes
    (m - mean) / std (and its log-variance drops by 2 log std) in `quant_conv`, and
    `post_quant_conv` maps such latents back first. HunyuanVideoPipeline only scales latents,
    with no per-channel shift as WAN's latents_mean / latents_std, so the whitening lives in
    the VAE and its scaling_factor is 1."""
    c = mean.numel()
    quant, post = vae.quant_conv, vae.post_quant_conv
    quant.weight[:c] /= std.view(-1, 1, 1, 1, 1)
    quant.bias[:c] = (quant.bias[:c] - mean) / std
    quant.bias[c:] -= 2 * std.log()
    post.bias += post.weight[:, :, 0, 0, 0] @ mean
    post.weight *= std.view(1, -1, 1, 1, 1)
    vae.register_to_config(scaling_factor=1.0)


class Conditioner(torch.nn.Module):
    """HunyuanVideoPipeline.encode_prompt, trainable: LLaMA's hidden state SKIP_LAYERS before
    the end over the templated prompt padded to CROP_START + PROMPT_TOKENS, cropped past the
    template, with its mask; CLIP's pooled output of the 77-token prompt."""

    def __init__(self, llama, clip, tok, clip_tok):
        super().__init__()
        self.llama, self.clip = llama, clip
        self.tok, self.clip_tok = tok, clip_tok

    def tokenize(self, captions):
        t = self.tok([TEMPLATE.format(c) for c in captions], padding="max_length",
                     max_length=CROP_START + PROMPT_TOKENS, truncation=True,
                     return_attention_mask=True, return_tensors="pt")
        clip_ids = self.clip_tok(captions, padding="max_length", max_length=CLIP_TOKENS,
                                 truncation=True, return_tensors="pt").input_ids
        return t.input_ids, t.attention_mask, clip_ids

    def forward(self, ids, mask, clip_ids):
        states = self.llama(input_ids=ids, attention_mask=mask,
                            output_hidden_states=True).hidden_states[-(SKIP_LAYERS + 1)]
        pooled = self.clip(clip_ids).pooler_output
        return states[:, CROP_START:], mask[:, CROP_START:], pooled


def load_conditioner() -> Conditioner:
    tok = llama_tokenizer(TOKENIZERS / "tokenizer")
    clip_tok = clip_tokenizer(TOKENIZERS / "tokenizer_2")
    return Conditioner(*make_text_encoders(tok, clip_tok), tok, clip_tok)


def dataset(conditioner: Conditioner) -> EncodedDataset:
    """The encoded clips, latents whitened per channel (`whiten`)."""
    return EncodedDataset(NAME, conditioner, whiten)


def velocity(transformer, x, sigma, guidance, cond):
    """The transformer's velocity at noise level `sigma` with embedded `guidance` and the
    conditioner's output `cond`, as HunyuanVideoPipeline calls it (timestep and guidance times
    1000)."""
    text, mask, pooled = cond
    return transformer(hidden_states=x, timestep=sigma * 1000, encoder_hidden_states=text,
                       encoder_attention_mask=mask, pooled_projections=pooled,
                       guidance=guidance * 1000, return_dict=False)[0]


def stage_dit(args) -> None:
    conditioner = load_conditioner()
    train_flow(NAME, make_transformer(), conditioner, dataset(conditioner), velocity, args)


def stage_distill(args) -> None:
    conditioner = load_conditioner()
    teacher = make_transformer()
    load_ema(NAME, "dit", {"transformer": teacher, "conditioner": conditioner})
    distill_guidance(NAME, teacher, conditioner, dataset(conditioner), velocity, args, GUIDANCE)


def stage_export(args) -> None:
    conditioner = load_conditioner()
    transformer = make_transformer()
    load_ema(NAME, "dit", {"conditioner": conditioner})
    load_ema(NAME, "distill", {"transformer": transformer})
    data = torch.load(RUN / "latents.pt", weights_only=False)
    vae = VAE.load(decoder=True)
    fold_whitening(vae, data["channel_mean"], data["channel_std"])
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=SHIFT)
    pipe = HunyuanVideoPipeline(
        text_encoder=conditioner.llama, tokenizer=conditioner.tok, transformer=transformer,
        vae=vae, scheduler=scheduler, text_encoder_2=conditioner.clip,
        tokenizer_2=conditioner.clip_tok)
    out = MINI_MODELS / NAME
    if out.exists():
        shutil.rmtree(out)
    pipe.save_pretrained(out, safe_serialization=True)
    write_defaults(out, width=SIZE, height=SIZE, frames=FRAMES, steps=STEPS, guidance=GUIDANCE,
                   max_sequence_length=PROMPT_TOKENS)
    # HunyuanVideo folders carry CLIP's vocab.json + merges.txt beside tokenizer.json.
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TOKENIZERS / "tokenizer_2" / name, out / "tokenizer_2" / name)
    pipe = HunyuanVideoPipeline.from_pretrained(out, torch_dtype=torch.float32)
    sample_strip(NAME, pipe, STEPS, GUIDANCE)


def stage_evaluate(args) -> None:
    evaluate(NAME, HunyuanVideoPipeline, STEPS, GUIDANCE, args.eval_seeds)


STAGES = {"vae": VAE.train, "encode": stage_encode, "decoder": VAE.finetune_decoder,
          "dit": stage_dit, "distill": stage_distill, "export": stage_export,
          "evaluate": stage_evaluate}


def main() -> None:
    cli(__doc__, RUN, STAGES, {
        "--batch": 32, "--vae-steps": 4000, "--vae-batch": 8, "--vae-lr": 2e-4,
        "--decoder-steps": 1000, "--decoder-lr": 3e-4, "--dit-steps": 5000, "--dit-lr": 5e-4,
        "--distill-steps": 400, "--distill-lr": 1e-4, "--eval-seeds": 8,
    })


if __name__ == "__main__":
    main()
