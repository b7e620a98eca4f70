"""How LiteMedSAM's image encoder runs: eager PyTorch, or ONNX Runtime on a CPU.

Measured on this project's 2-core CPU (``benchmarks/litemedsam_speed.py``, RESULTS.md): ONNX
Runtime runs the TinyViT encoder about twice as fast as eager PyTorch fp32, with embeddings
within 1e-5 of eager's and the same masks on every slice checked (39 slices of ten real lesions,
each with its reference box, and a 30-slice CT lesion). Also measured and not kept: torch.compile
(inductor; about 1.4x, after more than three minutes of compiling in each process), dynamic int8
quantisation of the Linear layers (PyTorch's, and ONNX Runtime's: no faster than eager); bf16 was
not tried: this CPU has neither AVX512-BF16 nor AMX.

=============  ==================================================================================
runtime        what runs the encoder
=============  ==================================================================================
``"auto"``     ``"onnx"`` on a CPU where ``onnxruntime`` and ``onnx`` are installed, else eager
``"eager"``    the PyTorch module, in ``torch.inference_mode`` (fp32 on CPU)
``"onnx"``     ONNX Runtime's CPU provider on the encoder exported with ``torch.onnx.export``
=============  ==================================================================================

The backend's ``encoder_runtime`` option chooses (environment default ``LITEMEDSAM_ENCODER``).
The export (about 20 s) is made once per machine and kept in a cache folder
(``LITEMEDSAM_ONNX_DIR``, default ``<temp>/litemedsam-onnx``) under a name made of the base
checkpoint's SHA-256 and the torch version, written atomically; a fine-tuned model keeps the base
encoder, so every model version shares it. One ONNX Runtime session per process and file.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..base import BackendUnavailable
from .frames import MODEL_SIZE
from .weights import BASE_SHA256, INSTALL_HINT, LoadedModel

if TYPE_CHECKING:
    import torch

__all__ = ["RUNTIMES", "Encoder", "image_encoder", "onnx_available", "resolve_runtime"]

RUNTIMES = ("auto", "eager", "onnx")
OPSET = 17
# (batch of (n, 3, 256, 256) float32 frames on CPU) -> (n, 256, 64, 64) float32 embeddings
Encoder = Callable[["torch.Tensor"], npt.NDArray[np.float32]]

_lock = threading.Lock()
_sessions: dict[tuple[str, int], Any] = {}


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ONNX package (the exporter needs it) are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_runtime(runtime: str | None, device: str) -> str:
    """The runtime to use: ``runtime`` (None: ``LITEMEDSAM_ENCODER``, else "auto") made
    concrete for ``device``; refuses an unknown name, or ONNX where it cannot run."""
    name = (runtime or os.environ.get("LITEMEDSAM_ENCODER", "").strip() or "auto").lower()
    if name not in RUNTIMES:
        raise ValueError(f"encoder runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    on_cpu = device == "cpu"
    if name == "auto":
        return "onnx" if on_cpu and onnx_available() else "eager"
    if name == "onnx":
        if not on_cpu:
            raise BackendUnavailable(
                f"the ONNX encoder runs on the CPU; use encoder runtime 'eager' on {device}"
            )
        if not onnx_available():
            raise BackendUnavailable(
                f"the ONNX encoder needs the packages onnxruntime and onnx; {INSTALL_HINT}"
            )
    return name


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
    def run(frames: torch.Tensor) -> npt.NDArray[np.float32]:
        # The session is made at the first slice to encode: a process that finds every
        # embedding in the store never pays for it.
        session = _session(model)
        name = session.get_inputs()[0].name
        # The export has a batch of one (TinyViT's reshapes fix it); a batch on a CPU is no
        # faster per slice anyway.
        array = np.ascontiguousarray(frames.detach().cpu().numpy(), dtype=np.float32)
        outs = [session.run(None, {name: array[i : i + 1]})[0] for i in range(len(array))]
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


def export(model: LoadedModel, path: Path) -> Path:
    """Export the base image encoder to ``path`` (written to a temporary name, then renamed:
    another process never reads half a file)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    module = model.net.image_encoder
    if model.device != "cpu":
        raise BackendUnavailable("the ONNX export runs on the CPU model")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the exporter's notes on TinyViT's Python shapes
            torch.onnx.export(
                module,
                (torch.zeros((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=torch.float32),),
                str(partial),
                input_names=["image"],
                output_names=["embedding"],
                opset_version=OPSET,
                dynamo=False,
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _session(model: LoadedModel) -> Any:
    """The process's session on the cached export, checked against eager PyTorch on a probe
    frame; a file that fails to load or to agree (damaged, or not this encoder's) is exported
    again, once."""
    import torch

    threads = max(1, torch.get_num_threads())
    with _lock:
        path = exported_path()
        key = (str(path), threads)
        if key in _sessions:
            return _sessions[key]
        if not path.is_file():
            export(model, path)
        try:
            session = _checked_session(model, path, threads)
        except Exception:
            path.unlink(missing_ok=True)
            export(model, path)
            try:
                session = _checked_session(model, path, threads)
            except Exception as exc:
                raise BackendUnavailable(f"the ONNX encoder {path} is unusable: {exc}") from exc
        _sessions[key] = session
        return session


PROBE_TOLERANCE = 1e-3  # largest difference from eager allowed on the probe (measured: 5e-6)


def _checked_session(model: LoadedModel, path: Path, threads: int) -> Any:
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # as many as torch uses in this process
    options.inter_op_num_threads = 1
    # No busy-waiting between runs: as fast here, and it leaves the cores to the web server
    # and the other jobs of a shared machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    probe = np.random.default_rng(0).random((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=np.float32)
    got = session.run(None, {session.get_inputs()[0].name: probe})[0]
    expected = _eager_encoder(model)(torch.from_numpy(probe))
    difference = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
    if not difference <= PROBE_TOLERANCE:
        raise ValueError(f"its output differs from eager PyTorch's by {difference:.3g}")
    return session
