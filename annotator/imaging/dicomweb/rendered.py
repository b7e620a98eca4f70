"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3-4; parameters: 8.3.5).

Routes (under ``/dicomweb/``): ``.../instances/{i}/rendered``, ``.../instances/{i}/frames/{f}/
rendered`` (one frame), and ``thumbnail`` at the study, series, instance and frame levels.

Rendering one frame, as PS3.4's grayscale pipeline does: the stored values, the modality LUT
(Rescale Slope / Intercept, from the dataset or its functional groups), the VOI (the ``window``
query parameter, else the file's first Window Center / Width, else the frame's own range), the
VOI function (``linear``, ``linear-exact``, ``sigmoid``), MONOCHROME1 inverted; colour frames are
shown as they are (YBR as RGB, palette colour through its LUT), scaled to 8 bits. An instance's
rendered resource is its first frame; a thumbnail is the middle frame of the middle instance (of
the study's first series with pixel data).

Query parameters: ``accept`` (a media type, overriding the Accept header), ``window=center,width
[,function]``, ``viewport=width,height`` (the image is scaled to fit inside, keeping its aspect;
at most ``MAX_VIEWPORT`` each way; with no viewport, a rendered image is only ever shrunk to
that bound, a thumbnail to ``THUMBNAIL_SIZE``) and ``quality`` (1-100, JPEG only). Media types:
``image/jpeg`` (the default, PS3.18 8.7.4) and ``image/png``; anything else is 406. A bad
parameter is a 400 naming it.

Caps: one frame is decoded per request, and a frame of more than ``MAX_RENDER_SAMPLES`` samples
is refused before it is read.
"""

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import numpy as np
from django.http import Http404, HttpResponse
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian
from rest_framework.exceptions import NotAcceptable, ValidationError
from rest_framework.request import Request

from annotator.imaging.dicomweb.files import Header, open_file, read_header
from annotator.imaging.dicomweb.multipart import parse_accept
from annotator.imaging.dicomweb.views import (
    DicomWebView,
    instance_or_404,
    series_or_404,
    studies_or_404,
)
from annotator.imaging.dicomweb.wado import parse_frame_numbers
from annotator.models import Instance, Series

log = logging.getLogger(__name__)
JPEG = "image/jpeg"
PNG = "image/png"
MAX_VIEWPORT = 4096
THUMBNAIL_SIZE = 128
# 64 Mi samples: a 8192 x 8192 frame; each is decoded to at most 8 bytes (float64) at a time.
MAX_RENDER_SAMPLES = 64 * 1024 * 1024
VOI_FUNCTIONS = ("linear", "linear-exact", "sigmoid")


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "linear"


@dataclass(frozen=True)
class RenderOptions:
    media_type: str
    window: Window | None
    viewport: tuple[int, int] | None
    quality: int


def _media_type(request: Request) -> str:
    """The first acceptable of ``accept`` (query) or the Accept header; 406 when none is."""
    from_query = request.query_params.get("accept")
    accept = from_query if from_query is not None else request.headers.get("Accept")
    for option in parse_accept(accept or "*/*"):
        if option.type in (JPEG, "image/*", "*/*"):
            return JPEG
        if option.type == PNG:
            return PNG
    raise NotAcceptable(f"rendered images are {JPEG} (the default) or {PNG}")


def _numbers(request: Request, name: str, count: tuple[int, ...]) -> list[str] | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    values = [v.strip() for v in raw.split(",")]
    if len(values) not in count:
        raise ValidationError({name: [f"expected {' or '.join(map(str, count))} values"]})
    return values


def _window(request: Request) -> Window | None:
    values = _numbers(request, "window", (2, 3))
    if values is None:
        return None
    message = f"center,width[,function]: numbers, width > 0, function one of {VOI_FUNCTIONS}"
    try:
        center, width = float(values[0]), float(values[1])
    except ValueError:
        raise ValidationError({"window": [message]}) from None
    function = values[2].lower() if len(values) == 3 else "linear"
    if not (math.isfinite(center) and math.isfinite(width)) or function not in VOI_FUNCTIONS:
        raise ValidationError({"window": [message]})
    if width <= 0 or (function == "linear" and width < 1):
        raise ValidationError({"window": [message + " (at least 1 for linear)"]})
    return Window(center, width, function)


def _viewport(request: Request) -> tuple[int, int] | None:
    values = _numbers(request, "viewport", (2,))
    if values is None:
        return None
    try:
        width, height = int(values[0]), int(values[1])
    except ValueError:
        width = height = 0
    if not (1 <= width <= MAX_VIEWPORT and 1 <= height <= MAX_VIEWPORT):
        raise ValidationError(
            {"viewport": [f"width,height: whole numbers from 1 to {MAX_VIEWPORT}"]}
        )
    return width, height


def _quality(request: Request) -> int:
    raw = request.query_params.get("quality")
    if raw is None:
        return 90
    try:
        quality = int(raw)
    except ValueError:
        quality = 0
    if not 1 <= quality <= 100:
        raise ValidationError({"quality": ["a whole number from 1 to 100"]})
    return quality


def render_options(request: Request) -> RenderOptions:
    """The request's rendering parameters, checked (400 naming the parameter, 406)."""
    return RenderOptions(
        media_type=_media_type(request),
        window=_window(request),
        viewport=_viewport(request),
        quality=_quality(request),
    )


# Decoding one frame.


def _int(ds: Dataset, name: str, default: int) -> int:
    try:
        return int(ds.get(name, default))
    except (TypeError, ValueError):
        return default


def _frame_array(f: IO[bytes], header: Header, index: int) -> np.ndarray:
    ds = header.dataset
    samples = _int(ds, "Rows", 0) * _int(ds, "Columns", 0) * _int(ds, "SamplesPerPixel", 1)
    if samples > MAX_RENDER_SAMPLES:
        raise ValidationError({"frames": [f"the frame is too large to render ({samples} samples)"]})
    if samples == 0 or header.pixel_vr is None:
        raise Http404("the instance holds no pixel data")
    deflated = header.transfer_syntax == DeflatedExplicitVRLittleEndian
    # a deflated file is inflated whole to reach one frame: capped as a frame is
    if deflated and samples * header.number_of_frames > MAX_RENDER_SAMPLES:
        raise ValidationError({"frames": ["the deflated instance is too large to render"]})
    f.seek(0)
    try:
        if deflated:
            array = dcmread(f).pixel_array
            return np.asarray(array[index] if header.number_of_frames > 1 else array)
        return np.asarray(pixel_array(cast(BinaryIO, f), index=index))
    except Exception as exc:  # pydicom's decoders raise many kinds on data they cannot decode
        log.exception("frame %s of %s could not be decoded", index + 1, ds.get("SOPInstanceUID"))
        raise NotAcceptable("the frame cannot be decoded, so it cannot be rendered") from exc


def _item(sequence: Any) -> Dataset | None:
    return sequence[0] if sequence else None


def _frame_attribute(ds: Dataset, index: int, group: str, name: str) -> Any:
    """``name`` from the dataset, else from the frame's or the shared functional group."""
    if name in ds:
        return ds.get(name)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    candidates = [per_frame[index] if per_frame and index < len(per_frame) else None]
    candidates.append(_item(ds.get("SharedFunctionalGroupsSequence")))
    for groups in candidates:
        item = _item(groups.get(group)) if groups is not None else None
        if item is not None and name in item:
            return item.get(name)
    return None


def _first_number(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "__len__"):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _voi(values: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2: stored-after-modality values to [0, 255]."""
    c, w = window.center, window.width
    if window.function == "linear-exact":
        out = ((values - c) / w + 0.5) * 255.0
    elif window.function == "sigmoid":
        out = 255.0 / (1.0 + np.exp(np.clip(-4.0 * (values - c) / w, -700, 700)))
    else:
        out = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else values * 0.0
        out = np.where(values <= c - 0.5 - (w - 1) / 2, 0.0, out)
        out = np.where(values > c - 0.5 + (w - 1) / 2, 255.0, out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _grayscale(array: np.ndarray, ds: Dataset, index: int, window: Window | None) -> np.ndarray:
    slope = _first_number(
        _frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
    )
    intercept = _first_number(
        _frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
    )
    values = array.astype(np.float64) * (1.0 if slope is None else slope)
    values += 0.0 if intercept is None else intercept
    if window is None:
        center = _first_number(_frame_attribute(ds, index, "FrameVOILUTSequence", "WindowCenter"))
        width = _first_number(_frame_attribute(ds, index, "FrameVOILUTSequence", "WindowWidth"))
        if center is not None and width is not None and width >= 1:
            window = Window(center, width)
        else:  # no window in the file: the frame's own range, end to end
            low, high = float(values.min()), float(values.max())
            window = Window((low + high) / 2, max(high - low, 1.0), "linear-exact")
    out = _voi(values, window)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out
    return out


def _to_8_bits(array: np.ndarray, bits: int) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    shift = max(bits - 8, 0)
    return np.clip(array.astype(np.int64) >> shift, 0, 255).astype(np.uint8)


def render_frame(f: IO[bytes], header: Header, index: int, window: Window | None) -> Image.Image:
    """Frame ``index`` (0-based) of the open file as an 8-bit image (L or RGB)."""
    ds = header.dataset
    array = _frame_array(f, header, index)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    bits = _int(ds, "BitsStored", _int(ds, "BitsAllocated", 8)) or 8
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, ds)
        lut_bits = 16 if rgb.dtype.itemsize > 1 else 8
        return Image.fromarray(_to_8_bits(rgb, lut_bits), "RGB")
    if array.ndim == 3 and array.shape[-1] == 3:
        return Image.fromarray(_to_8_bits(array, bits), "RGB")
    if array.ndim != 2:
        raise Http404("the frame cannot be rendered")
    return Image.fromarray(_grayscale(array, ds, index, window), "L")


def _fit(image: Image.Image, viewport: tuple[int, int]) -> Image.Image:
    """Scaled to fit inside ``viewport``, keeping the aspect ratio."""
    width, height = image.size
    scale = min(viewport[0] / width, viewport[1] / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def encode(image: Image.Image, options: RenderOptions) -> bytes:
    buffer = io.BytesIO()
    if options.media_type == PNG:
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=options.quality)
    return buffer.getvalue()


def rendered_response(
    instance: Instance, frame: int | None, options: RenderOptions, default_viewport: int | None
) -> HttpResponse:
    """The instance's frame ``frame`` (1-based; None: the middle one) rendered."""
    with open_file(instance) as f:
        header = read_header(f)
        if header.pixel_vr is None:
            raise Http404("the instance holds no pixel data")
        frames = header.number_of_frames
        number = (frames + 1) // 2 if frame is None else frame
        if number > frames:
            raise Http404(f"the instance has {frames} frame(s)")
        image = render_frame(f, header, number - 1, options.window)
    if options.viewport is not None:
        image = _fit(image, options.viewport)
    elif max(image.size) > (bound := default_viewport or MAX_VIEWPORT):
        image = _fit(image, (bound, bound))  # with no viewport asked for, only ever shrunk
    return HttpResponse(encode(image, options), content_type=options.media_type)


def _single_frame(frames: str) -> int:
    numbers = parse_frame_numbers(frames)
    if len(numbers) != 1:
        raise ValidationError({"frames": ["a rendered frame is one frame number"]})
    return numbers[0]


def _middle_instance(series: Series) -> Instance | None:
    instances = list(
        series.instances.select_related("series", "series__study").order_by("frame_offset", "pk")
    )
    return instances[len(instances) // 2] if instances else None


class InstanceRendered(DicomWebView):
    def get(self, request: Request, study: str, series: str, instance: str) -> HttpResponse:
        options = render_options(request)
        found = instance_or_404(self.user(), study, series, instance)
        return rendered_response(found, 1, options, None)


class FrameRendered(DicomWebView):
    def get(
        self, request: Request, study: str, series: str, instance: str, frames: str
    ) -> HttpResponse:
        options = render_options(request)
        number = _single_frame(frames)
        found = instance_or_404(self.user(), study, series, instance)
        return rendered_response(found, number, options, None)


def _thumbnail(request: Request, pick: Callable[[], tuple[Instance, int | None]]) -> HttpResponse:
    options = render_options(request)
    instance, frame = pick()
    return rendered_response(instance, frame, options, THUMBNAIL_SIZE)


class StudyThumbnail(DicomWebView):
    def get(self, request: Request, study: str) -> HttpResponse:
        def pick() -> tuple[Instance, int | None]:
            studies = studies_or_404(self.user(), study)
            for series in Series.objects.filter(study__in=studies).order_by("pk"):
                instance = _middle_instance(series)
                if instance is not None and instance.number_of_frames > 0:
                    return instance, None
            raise Http404("the study holds no image")

        return _thumbnail(request, pick)


class SeriesThumbnail(DicomWebView):
    def get(self, request: Request, study: str, series: str) -> HttpResponse:
        def pick() -> tuple[Instance, int | None]:
            for found in series_or_404(self.user(), study, series).order_by("pk"):
                instance = _middle_instance(found)
                if instance is not None:
                    return instance, None
            raise Http404("the series holds no instance")

        return _thumbnail(request, pick)


class InstanceThumbnail(DicomWebView):
    def get(self, request: Request, study: str, series: str, instance: str) -> HttpResponse:
        return _thumbnail(
            request, lambda: (instance_or_404(self.user(), study, series, instance), None)
        )


class FrameThumbnail(DicomWebView):
    def get(
        self, request: Request, study: str, series: str, instance: str, frames: str
    ) -> HttpResponse:
        number = _single_frame(frames)
        return _thumbnail(
            request, lambda: (instance_or_404(self.user(), study, series, instance), number)
        )
