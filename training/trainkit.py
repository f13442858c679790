"""Shared pieces of the mini-model training scripts: determinism, tokenizers for the caption
grammar, resumable training stages with a progress bar, EMA, flow-matching helpers, and the
transformer stages themselves (rectified flow, guidance distillation).

Every stage saves a checkpoint to training/runs/<model>/<stage>.pt every few hundred steps and
picks it up again when restarted, so an interrupted run resumes where it stopped.
"""

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import CLIPTokenizer, T5Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))
from gen_text_encoders import clip_vocab, learn_merges, write_clip_files  # noqa: E402

from scenes import vocabulary  # noqa: E402

RUNS = ROOT / "training" / "runs"
MINI_MODELS = ROOT / "mini-models"
PROMPT_TOKENS = 24  # T5 / umT5 prompt length the mini models are trained (and run) with


def setup(seed: int, threads: int) -> None:
    """Fixed seeds and thread count for a reproducible CPU run."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP byte-level BPE whose merges make every word of the caption grammar one token,
    saved as vocab.json + merges.txt (the layout of FLUX folders)."""
    words = [list(w[:-1]) + [w[-1] + "</w>"] for w in vocabulary()]
    merges = learn_merges(words, 10_000)
    write_clip_files(folder, clip_vocab(merges), merges)
    tok = CLIPTokenizer(vocab_file=str(folder / "vocab.json"),
                        merges_file=str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(folder)
    (folder / "tokenizer.json").unlink(missing_ok=True)
    return CLIPTokenizer.from_pretrained(folder)


def t5_tokenizer(folder: Path) -> T5Tokenizer:
    """A T5 Unigram tokenizer (<pad>=0, </s>=1, <unk>=2) with one piece per grammar word and
    every letter as a fallback; `model_max_length` is the mini models' prompt length."""
    words = vocabulary()
    letters = sorted({c for w in words for c in w} | {"▁"})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + w, -1.0) for w in words]
    vocab += [(c, -8.0) for c in letters]
    tok = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=PROMPT_TOKENS)
    tok.save_pretrained(folder)
    return T5Tokenizer.from_pretrained(folder)


class Ema:
    """Exponential moving average of a module's parameters."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p.detach(), 1 - decay)


def logit_normal(n: int, gen: torch.Generator) -> torch.Tensor:
    """Noise levels sigma in (0, 1), logit-normally distributed (SD3 / FLUX training)."""
    return torch.sigmoid(torch.randn(n, generator=gen))


def noised(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor):
    """Rectified-flow interpolation x_sigma = (1 - sigma) x0 + sigma noise and its velocity
    target noise - x0 (what FLUX and WAN predict)."""
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise, noise - x0


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Stage:
    """One resumable training stage: the modules and optimizer it trains, checkpointed to
    runs/<model>/<name>.pt with the step, EMA and RNG state."""

    def __init__(self, model: str, name: str, steps: int, modules: dict, optimizer,
                 ema: dict | None = None, every: int = 200):
        self.path = RUNS / model / f"{name}.pt"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.name, self.steps, self.every = name, steps, every
        self.modules, self.optimizer, self.ema = modules, optimizer, ema or {}
        self.step = 0
        self.losses: list[float] = []
        self.started = time.time()
        self.seconds = 0.0
        if self.path.exists():
            state = torch.load(self.path, weights_only=False)
            for k, m in self.modules.items():
                m.load_state_dict(state["modules"][k])
            for k, e in self.ema.items():
                e.shadow.load_state_dict(state["ema"][k])
            optimizer.load_state_dict(state["optimizer"])
            self.step, self.losses = state["step"], state["losses"]
            self.seconds = state["seconds"]
            torch.set_rng_state(state["torch_rng"])
            print(f"{name}: resumed at step {self.step}/{steps}")

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    def save(self) -> None:
        state = {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "ema": {k: e.shadow.state_dict() for k, e in self.ema.items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "losses": self.losses,
            "seconds": self.seconds + time.time() - self.started,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)
        self.started = time.time()
        self.seconds = state["seconds"]

    def run(self, train_step, peak_lr: float, warmup: int = 100) -> None:
        """Calls `train_step(step) -> loss` until `steps`, with the learning-rate schedule,
        EMA updates, a progress bar and periodic checkpoints."""
        bar = tqdm(total=self.steps, initial=self.step, desc=self.name, dynamic_ncols=True)
        while self.step < self.steps:
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(self.step, self.steps, peak_lr, warmup)
            loss = train_step(self.step)
            for k, e in self.ema.items():
                e.update(self.modules[k], self.step)
            self.losses.append(loss)
            self.step += 1
            recent = self.losses[-50:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
            bar.update()
            if self.step % self.every == 0 or self.step == self.steps:
                self.save()
        bar.close()

    def summary(self) -> dict:
        """Final loss (mean of the last 100 steps), steps and training seconds."""
        tail = self.losses[-100:]
        return {"steps": self.step, "final_loss": sum(tail) / max(1, len(tail)),
                "seconds": round(self.seconds, 1)}


class EncodedDataset:
    """A run's encoded dataset (runs/<model>/latents.pt: posterior means and stds, captions)
    as the transformer trains on it: `batch` samples latents from the stored posteriors, maps
    them with `normalise(z, stored)` (`stored`: the file's contents, with the normalisation the
    encode stage wrote) to what the pipeline denoises, and gives the captions' tokens
    (`conditioner.tokenize`, a tuple of tensors) with a share `dropout` of them replaced by the
    empty prompt's."""

    def __init__(self, model: str, conditioner, normalise):
        data = torch.load(RUNS / model / "latents.pt", weights_only=False)
        self.stored, self.normalise = data, normalise
        self.mean, self.std = data["mean"], data["std"]
        self.tokens = conditioner.tokenize(data["captions"])
        self.empty = conditioner.tokenize([""])

    def batch(self, n: int, gen: torch.Generator, dropout: float):
        idx = torch.randint(0, len(self.mean), (n,), generator=gen)
        z = self.mean[idx] + self.std[idx] * torch.randn(self.mean[idx].shape, generator=gen)
        tokens = tuple(t[idx].clone() for t in self.tokens)
        drop = torch.rand(n, generator=gen) < dropout
        for t, empty in zip(tokens, self.empty):
            t[drop] = empty
        return self.normalise(z, self.stored), tokens


def load_ema(model: str, stage: str, modules: dict) -> None:
    """Loads the EMA weights stage `stage` of `model` kept for each of `modules`."""
    state = torch.load(RUNS / model / f"{stage}.pt", weights_only=False)
    for k, m in modules.items():
        m.load_state_dict(state["ema"][k])


def train_flow(model: str, transformer, conditioner, data, velocity, args) -> None:
    """The `dit` stage of `model`: rectified flow on the encoded dataset `data` (its
    `batch(n, gen, dropout)` gives clean latents and the captions' tokens, 10 % of them
    dropped to the empty prompt), the transformer and the text encoders (`conditioner`, which
    maps tokens to what `velocity(transformer, x, sigma, guidance, cond)` takes) trained
    together at guidance 1, with EMA."""
    modules = {"transformer": transformer, "conditioner": conditioner}
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.dit_lr, weight_decay=0.0)
    ema = {k: Ema(m, 0.999) for k, m in modules.items()}
    stage = Stage(model, "dit", args.dit_steps, modules, opt, ema)
    gen = torch.Generator().manual_seed(2)

    def step(i):
        x0, tokens = data.batch(args.batch, gen, dropout=0.1)
        noise = torch.randn(x0.shape, generator=gen)
        sigma = logit_normal(args.batch, gen)
        xt, target = noised(x0, noise, sigma)
        pred = velocity(transformer, xt, sigma, torch.ones(args.batch), conditioner(*tokens))
        return optimize(opt, params, F.mse_loss(pred, target))

    if not stage.done:
        stage.run(step, args.dit_lr)
    write_summary(model, "dit", stage.summary())


def distill_guidance(model: str, teacher, conditioner, data, velocity, args,
                     max_guidance: float) -> None:
    """The `distill` stage of `model`: a copy of the trained `teacher` learns, at embedded
    guidance g drawn from [1, `max_guidance`], the teacher's classifier-free-guided velocity
    v_u + g (v_c - v_u) with the empty prompt as the unconditional one (how FLUX.1-dev's and
    HunyuanVideo's guidance embeddings are used: one pass a step). `data` and `velocity` as
    for `train_flow`; the conditioner's output is a tuple of tensors with the batch first."""
    teacher.eval().requires_grad_(False)
    conditioner.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    opt = torch.optim.AdamW(student.parameters(), lr=args.distill_lr, weight_decay=0.0)
    ema = {"transformer": Ema(student, 0.998)}
    stage = Stage(model, "distill", args.distill_steps, {"transformer": student}, opt, ema)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        empty = conditioner(*data.empty)

    def step(i):
        n = args.batch
        x0, tokens = data.batch(n, gen, dropout=0.0)
        noise = torch.randn(x0.shape, generator=gen)
        sigma = logit_normal(n, gen)
        xt, _ = noised(x0, noise, sigma)
        g = 1.0 + (max_guidance - 1.0) * torch.rand(n, generator=gen)
        with torch.no_grad():
            cond = conditioner(*tokens)
            uncond = [e.expand(n, *e.shape[1:]) for e in empty]
            ones = torch.ones(n)
            v_c = velocity(teacher, xt, sigma, ones, cond)
            v_u = velocity(teacher, xt, sigma, ones, uncond)
            target = v_u + g.view(-1, *[1] * (v_c.ndim - 1)) * (v_c - v_u)
        pred = velocity(student, xt, sigma, g, cond)
        return optimize(opt, student.parameters(), F.mse_loss(pred, target))

    if not stage.done:
        stage.run(step, args.distill_lr, warmup=50)
    write_summary(model, "distill", stage.summary())


def write_defaults(folder: Path, **settings) -> None:
    """Writes the settings a mini model is meant to run at into its pipeline folder
    (dicache_defaults.json: width, height, frames, steps, guidance, max_sequence_length),
    where `cargo xtask run` and the benchmarks take their defaults from."""
    (folder / "dicache_defaults.json").write_text(json.dumps(settings, indent=2) + "\n")


def write_summary(model: str, stage: str, summary: dict) -> None:
    """Merges one stage's summary into runs/<model>/summary.json."""
    path = RUNS / model / "summary.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = summary
    path.write_text(json.dumps(data, indent=2) + "\n")


def optimize(opt, params, loss: torch.Tensor) -> float:
    """One optimizer step on `loss` with gradients clipped to norm 1; returns the loss."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item()


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, weight=None) -> torch.Tensor:
    """L1 + MSE of a VAE's reconstruction, a weighted mean over pixels when `weight` is given."""
    if weight is None:
        return torch.nn.functional.l1_loss(rec, x) + torch.nn.functional.mse_loss(rec, x)
    err = (rec - x).abs() + (rec - x) ** 2
    return (weight * err).mean() / weight.mean()


def vae_loss(vae, x: torch.Tensor, gen: torch.Generator, weight=None) -> torch.Tensor:
    """Reconstruction of `x` through a sampled latent plus a small KL term (1e-4 per element)."""
    posterior = vae.encode(x).latent_dist
    rec = vae.decode(posterior.sample(generator=gen)).sample
    kl = posterior.kl().mean() / x[0].numel()
    return reconstruction_loss(rec, x, weight) + 1e-4 * kl


def cli(doc: str, run_dir: Path, stages: dict, options: dict) -> None:
    """The scripts' command line: a stage name (or `all`, every stage in order; each skips what
    it finished before), `--threads`, and `options` ({"--name": default}); records the arguments
    in `run_dir`/args.json and runs the stages."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=[*stages, "all"])
    parser.add_argument("--threads", type=int, default=1)
    for name, default in options.items():
        parser.add_argument(name, type=type(default), default=default)
    args = parser.parse_args()
    setup(0, args.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    for name, stage in stages.items():
        if args.stage in (name, "all"):
            stage(args)
