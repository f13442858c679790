//! `cargo xtask serve`: loads one pipeline (FLUX-mini by default) and serves the HTTP API and
//! the web page of `dicache-serve` until Ctrl-C or SIGTERM.

use std::{
    marker::PhantomData,
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    path::PathBuf,
};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use dicache_bench::{
    backend::{BackendJob, BackendKind, Dtype, dispatch},
    mini,
};
use dicache_serve::{Encode, Encoder, Limits, Model};
use dit_pipeline::{MAX_BATCH, Pipeline, PipelineFolder, available_memory};

use crate::run::{
    LoadArgs, RunModel, SparseArgs, before_loading, flux::Flux, hunyuan::HunyuanVideo,
    subcommand_of, wan::Wan,
};

/// Arguments of `cargo xtask serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A FLUX, WAN or HunyuanVideo pipeline folder in diffusers layout [default: FLUX-mini].
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub sparse: SparseArgs,
    /// The address to listen on; only this machine by default.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// The port to listen on (0: any free port, printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The most samples in the denoising loop at once: requests join it at step boundaries
    /// while the samples fit.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// The most samples waiting for room; more is answered 429.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Frames per second of the videos (video models).
    #[arg(long, default_value_t = 16)]
    pub fps: u32,
    /// Backend to run on (each needs its cargo feature).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// Float dtype of weights and compute.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

/// Runs `cargo xtask serve`.
pub fn run(args: ServeArgs) -> Result<()> {
    if !(1..=MAX_BATCH).contains(&args.max_batch) {
        bail!(
            "--max-batch {} must be between 1 and {MAX_BATCH}",
            args.max_batch
        );
    }
    if args.max_queue == 0 {
        bail!("--max-queue must be at least 1");
    }
    if args.fps == 0 {
        bail!("--fps must be at least 1");
    }
    dispatch(args.backend, args.dtype, args)
}

impl BackendJob for ServeArgs {
    type Output = ();

    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        let folder = match &self.model {
            Some(folder) => folder.clone(),
            None => mini::FLUX.folder_or(None)?,
        };
        let opened = PipelineFolder::open(&folder)
            .with_context(|| format!("{} is not a pipeline folder", folder.display()))?;
        match subcommand_of::<B>(opened.class_name()) {
            Some("flux") => serve::<B, Flux, 4>(&self, &opened, device),
            Some("wan") => serve::<B, Wan, 5>(&self, &opened, device),
            Some("hunyuan") => serve::<B, HunyuanVideo, 5>(&self, &opened, device),
            _ => bail!(
                "{} holds a {}; this server runs FluxPipeline, WanPipeline and \
                 HunyuanVideoPipeline folders",
                folder.display(),
                opened.class_name()
            ),
        }
    }
}

/// Loads model `M`'s pipeline from `opened` and serves it until a signal.
fn serve<B: Backend, M: RunModel<N>, const N: usize>(
    args: &ServeArgs,
    opened: &PipelineFolder,
    device: B::Device,
) -> Result<()>
where
    M::Pipeline<B>: Send + Sync + 'static,
    M::Extra: Default + Send + Sync,
    <M::Pipeline<B> as Pipeline<B, N>>::Job: Send,
    Encoder: Encode<N>,
{
    let name = <M::Pipeline<B> as Pipeline<B, N>>::NAME;
    let folder = opened.root();
    let defaults = opened.defaults(<M::Pipeline<B> as Pipeline<B, N>>::DEFAULTS)?;
    let sparse = args
        .sparse
        .settings(<M::Pipeline<B> as Pipeline<B, N>>::SPARSE_VIDEO, name, 0)?;
    let address = SocketAddr::new(args.host, args.port);
    let listener =
        TcpListener::bind(address).with_context(|| format!("cannot listen on {address}"))?;
    let options = args.load.options();
    before_loading::<B, M::Pipeline<B>, N>(opened, options, args.backend, args.dtype)?;
    eprintln!("loading {}", folder.display());
    let mut pipeline = M::Pipeline::<B>::load_with(folder, options, &device)
        .with_context(|| format!("loading the {name} pipeline from {}", folder.display()))?;
    pipeline.set_sparse_attention(sparse)?;
    let model = Model {
        pipeline,
        name: folder.display().to_string(),
        defaults,
        extra: M::Extra::default(),
        preset: M::preset(),
        fps: args.fps,
        // On the CPU the working memory is this machine's; a GPU's is its own.
        memory: (args.backend == BackendKind::Cpu)
            .then(available_memory)
            .flatten(),
        max_batch: args.max_batch,
        device,
        backend: PhantomData,
    };
    let limits = Limits {
        max_queue: args.max_queue,
        ..Limits::default()
    };
    eprintln!(
        "serving {name} on http://{} (Ctrl-C to stop)",
        listener.local_addr()?
    );
    dicache_serve::serve(model, listener, limits, dicache_serve::shutdown_signal())?;
    eprintln!("stopped");
    Ok(())
}
