"""How LiteMedSAM's networks run: eager PyTorch, or ONNX Runtime on a CPU.

Measured on this project's 2-core CPU (``benchmarks/litemedsam_speed.py``, RESULTS.md): ONNX
Runtime runs the TinyViT image encoder about 2.5 times as fast as eager PyTorch fp32 and the mask
decoder about 5 times as fast, with outputs within 1e-4 of eager's and the same masks on every
slice checked (39 slices of ten real lesions, each with its reference box; a 30-slice CT lesion
propagated through its slice range). Also measured and not kept: torch.compile (inductor; about
1.4x on the encoder, after more than three minutes of compiling in each process), dynamic int8
quantisation of the Linear layers (PyTorch's, and ONNX Runtime's: no faster than eager); bf16 was
not tried: this CPU has neither AVX512-BF16 nor AMX.

=============  ==================================================================================
runtime        what runs the image encoder and the mask decoder
=============  ==================================================================================
``"auto"``     ``"onnx"`` on a CPU where ``onnxruntime`` and ``onnx`` are installed, else eager
``"eager"``    the PyTorch modules, in ``torch.inference_mode`` (fp32 on CPU)
``"onnx"``     ONNX Runtime's CPU provider on the modules exported with ``torch.onnx.export``
=============  ==================================================================================

The backend's ``runtime`` option chooses (environment default ``LITEMEDSAM_RUNTIME``). The
encoder's export (about 20 s) is made once per machine and kept in a cache folder
(``LITEMEDSAM_ONNX_DIR``, default ``<temp>/litemedsam-onnx``) under a name made of the base
checkpoint's SHA-256 and the torch version, written atomically; a fine-tuned model keeps the base
encoder, so every model version shares it. The decoder, which fine-tuning changes, is exported in
memory from the loaded model (a few seconds, once per process and model). Each ONNX session is
checked against eager PyTorch on a probe input before it is used (the encoder's against eager's
output saved beside the export: no other process runs the eager encoder, which would cost it
seconds and a few hundred MiB); the prompt encoder and the resizing to the slice stay in
PyTorch (they cost little).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..base import BackendUnavailable
from .frames import MODEL_SIZE
from .weights import BASE_SHA256, INSTALL_HINT, LoadedModel

if TYPE_CHECKING:
    import torch

__all__ = [
    "RUNTIMES",
    "Decoder",
    "Encoder",
    "image_encoder",
    "mask_decoder",
    "onnx_available",
    "resolve_runtime",
    "torch_ops_around",
]

RUNTIMES = ("auto", "eager", "onnx")
OPSET = 17
EMBEDDING = (1, 256, 64, 64)
PROBE_TOLERANCE = 1e-3  # largest difference from eager allowed on a probe (measured: < 1e-4)
# (batch of (n, 3, 256, 256) float32 frames on CPU) -> (n, 256, 64, 64) float32 embeddings
Encoder = Callable[["torch.Tensor"], npt.NDArray[np.float32]]
# (embedding (1, 256, 64, 64), sparse prompt (1, k, 256), dense prompt (1, 256, 64, 64))
# -> (low-resolution mask logits (1, 1, 256, 256), predicted IoU (1, 1))
Decoder = Callable[
    ["torch.Tensor", "torch.Tensor", "torch.Tensor"], tuple["torch.Tensor", "torch.Tensor"]
]

_lock = threading.Lock()
_sessions: dict[tuple[str, ...], Any] = {}


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ONNX package (the exporter needs it) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str | None, device: str) -> str:
    """The runtime to use: ``runtime`` (None: ``LITEMEDSAM_RUNTIME``, else "auto") made
    concrete for ``device``; refuses an unknown name, or ONNX where it cannot run."""
    name = (runtime or os.environ.get("LITEMEDSAM_RUNTIME", "").strip() or "auto").lower()
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    on_cpu = device == "cpu"
    if name == "auto":
        return "onnx" if on_cpu and onnx_available() else "eager"
    if name == "onnx":
        if not on_cpu:
            raise BackendUnavailable(
                f"the ONNX runtime runs on the CPU; use runtime 'eager' on {device}"
            )
        if not onnx_available():
            raise BackendUnavailable(
                f"the ONNX runtime needs the packages onnxruntime and onnx; {INSTALL_HINT}"
            )
    return name


# -- the image encoder ----------------------------------------------------------------------


def image_encoder(model: LoadedModel, runtime: str) -> Encoder:
    """The encoder of ``model`` as a function of a batch of frames, run by ``runtime``
    ("eager" or "onnx", as :func:`resolve_runtime` returns)."""
    if runtime == "onnx":
        return _onnx_encoder(model)
    return _eager_encoder(model)


def _eager_encoder(model: LoadedModel) -> Encoder:
    import torch

    module = model.net.image_encoder

    def run(frames: torch.Tensor) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            out = module(frames.to(model.device)).float().cpu().numpy()
        return np.asarray(out, dtype=np.float32)

    return run


def _onnx_encoder(model: LoadedModel) -> Encoder:
    threads = _threads()

    def run(frames: torch.Tensor) -> npt.NDArray[np.float32]:
        # The session is made at the first slice to encode: a process that finds every
        # embedding in the store never pays for it.
        session = _encoder_session(model, threads)
        # The export has a batch of one (TinyViT's reshapes fix it); a batch on a CPU is no
        # faster per slice anyway.
        array = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        outs = [session.run(None, {"image": array[i : i + 1]})[0] for i in range(len(array))]
        return np.concatenate(outs).astype(np.float32, copy=False)

    return run


def cache_folder() -> Path:
    folder = os.environ.get("LITEMEDSAM_ONNX_DIR", "").strip()
    return Path(folder) if folder else Path(tempfile.gettempdir()) / "litemedsam-onnx"


def exported_path() -> Path:
    """Where the encoder's export is kept for this checkpoint and torch version."""
    import torch

    version = torch.__version__.split("+")[0]
    return cache_folder() / f"encoder-{BASE_SHA256[:16]}-torch{version}-opset{OPSET}.onnx"


def _export(module: Any, inputs: tuple[Any, ...], target: Any, **options: Any) -> None:
    import torch

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the exporter's notes on the models' Python shapes
        torch.onnx.export(module, inputs, target, opset_version=OPSET, dynamo=False, **options)


def export(model: LoadedModel, path: Path) -> Path:
    """Export the base image encoder to ``path``, with eager PyTorch's output on the probe
    frame beside it (each written to a temporary name, then renamed: another process never
    reads half a file)."""
    import torch

    if model.device != "cpu":
        raise BackendUnavailable("the ONNX export runs on the CPU model")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}.{threading.get_ident()}"
    partial = path.with_name(f".{path.name}.{token}")
    partial_probe = path.with_name(f".{path.name}.probe.{token}.npy")
    try:
        _export(
            model.net.image_encoder,
            (torch.zeros((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=torch.float32),),
            str(partial),
            input_names=["image"],
            output_names=["embedding"],
        )
        expected = _eager_encoder(model)(torch.from_numpy(_probe_frame()))
        np.save(partial_probe, _fingerprint(expected), allow_pickle=False)
        partial_probe.replace(_probe_path(path))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
        partial_probe.unlink(missing_ok=True)
    return path


def _probe_frame() -> npt.NDArray[np.float32]:
    return np.random.default_rng(0).random((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=np.float32)


def _fingerprint(embedding: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Every channel of the probe's embedding on an 8 x 8 grid: 16,384 values to compare."""
    return np.ascontiguousarray(embedding[:, :, ::8, ::8], dtype=np.float32)


def _probe_path(path: Path) -> Path:
    return path.with_name(path.name + ".probe.npy")


def _threads() -> int:
    """ONNX Runtime's threads: as many as PyTorch uses in this process (when the backend is
    built; :func:`torch_ops_around` lowers PyTorch's for a while)."""
    import torch

    return max(1, torch.get_num_threads())


def _encoder_session(model: LoadedModel, threads: int) -> Any:
    """The process's session on the cached export, checked on the probe frame against eager
    PyTorch's output saved with it (so that no process but the exporting one runs the eager
    encoder); a file that fails to load or to agree (damaged, or not this encoder's) is exported
    again, once."""
    with _lock:
        path = exported_path()
        key = ("encoder", str(path), str(threads))
        if key in _sessions:
            return _sessions[key]
        if not path.is_file():
            export(model, path)
        try:
            session = _checked_encoder(path, threads)
        except Exception:
            path.unlink(missing_ok=True)
            export(model, path)
            try:
                session = _checked_encoder(path, threads)
            except Exception as exc:
                raise BackendUnavailable(f"the ONNX encoder {path} is unusable: {exc}") from exc
        _sessions[key] = session
        return session


def _checked_encoder(path: Path, threads: int) -> Any:
    expected = np.load(_probe_path(path), allow_pickle=False)
    session = _new_session(str(path), threads)
    _check(_fingerprint(session.run(None, {"image": _probe_frame()})[0]), expected)
    return session


def _new_session(source: str | bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No busy-waiting between runs (as fast here, and it leaves the cores to the web server and
    # the other jobs of a shared machine); no memory arena kept at its high-water mark.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _check(got: npt.NDArray[Any], expected: npt.NDArray[Any]) -> None:
    difference = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
    if not difference <= PROBE_TOLERANCE:
        raise ValueError(f"its output differs from eager PyTorch's by {difference:.3g}")


# -- the mask decoder -----------------------------------------------------------------------


def mask_decoder(model: LoadedModel, runtime: str) -> Decoder:
    """The mask decoder of ``model`` with its single-mask output, run by ``runtime``. The image
    positional encoding, the same for every prompt, is computed once."""
    if runtime == "onnx":
        return _onnx_decoder(model)
    return _eager_decoder(model)


def _decoder_module(model: LoadedModel) -> Any:
    """The mask decoder as a module of (embedding, sparse, dense), the positional encoding
    held as a buffer."""
    import torch

    class SingleMask(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = model.net.mask_decoder
            with torch.inference_mode():
                pe = model.net.prompt_encoder.get_dense_pe()
            self.register_buffer("pe", pe.clone())

        def forward(
            self, embedding: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            masks, iou = self.decoder(
                image_embeddings=embedding,
                image_pe=self.pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            return masks, iou

    return SingleMask().eval()


def _eager_decoder(model: LoadedModel) -> Decoder:
    import torch

    module = _decoder_module(model)

    def run(
        embedding: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            masks, iou = module(embedding, sparse, dense)
        return masks, iou

    return run


def _onnx_decoder(model: LoadedModel) -> Decoder:
    import torch

    threads = _threads()

    def run(
        embedding: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        session = _decoder_session(model, threads)
        masks, iou = session.run(
            None,
            {
                "embedding": _array(embedding),
                "sparse": _array(sparse),
                "dense": _array(dense),
            },
        )
        return torch.from_numpy(masks), torch.from_numpy(iou)

    return run


@contextlib.contextmanager
def torch_ops_around(runtime: str) -> Iterator[None]:
    """Around ONNX Runtime's decoder, PyTorch's small operations (the prompt encoder, the
    resizing to the slice) run on one thread: PyTorch's threads, waiting busily after each
    operation, otherwise take the cores from ONNX Runtime's (prompts measured 25% slower)."""
    if runtime != "onnx":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _array(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


def _decoder_session(model: LoadedModel, threads: int) -> Any:
    """The process's session on this model's decoder, exported in memory (a fine-tuned decoder
    has its own) and checked against eager PyTorch on a box prompt and a box with clicks."""
    import torch

    key = ("decoder", str(model.base), str(model.tuned), str(threads))
    with _lock:
        if key in _sessions:
            return _sessions[key]
        module = _decoder_module(model)
        prompts = [_probe_prompt(model, clicks) for clicks in (0, 2)]
        buffer = io.BytesIO()
        _export(
            module,
            prompts[0],
            buffer,
            input_names=["embedding", "sparse", "dense"],
            output_names=["masks", "iou"],
            dynamic_axes={"sparse": {1: "tokens"}},  # a box, clicks, or both
        )
        try:
            session = _new_session(buffer.getvalue(), threads)
            for embedding, sparse, dense in prompts:
                feed = {"embedding": embedding.numpy(), "sparse": sparse.numpy()}
                got = session.run(None, {**feed, "dense": dense.numpy()})[0]
                with torch.inference_mode():
                    _check(got, module(embedding, sparse, dense)[0].numpy())
        except Exception as exc:
            raise BackendUnavailable(f"the ONNX mask decoder is unusable: {exc}") from exc
        _sessions[key] = session
        return session


def _probe_prompt(model: LoadedModel, clicks: int) -> tuple[torch.Tensor, ...]:
    """A random embedding with the prompt encoder's output for a box and ``clicks`` clicks."""
    import torch

    rng = np.random.default_rng(clicks)
    embedding = torch.from_numpy(rng.standard_normal(EMBEDDING, dtype=np.float32))
    box = torch.tensor([[60.0, 70.0, 150.0, 140.0]])
    points = None
    if clicks:
        xy = torch.from_numpy(rng.uniform(70, 130, (1, clicks, 2)).astype(np.float32))
        points = (xy, torch.ones((1, clicks), dtype=torch.int64))
    with torch.inference_mode():
        sparse, dense = model.net.prompt_encoder(points=points, boxes=box, masks=None)
    return embedding, sparse.clone(), dense.clone()
